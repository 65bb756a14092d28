//! Bounded memory mode: `shoal stream --max-memory 64MiB` (no `-o`) streams a 512 MiB file,
//! eight times its budget, from start to end over HTTP, and the bytes are the file's.
//!
//! **Bound held: peak RSS of the `shoal` process (VmHWM) ≤ 64 MiB + 48 MiB = 112 MiB.** The
//! 48 MiB above the piece budget are for everything that is not piece data: the binary and its
//! libraries, the async runtime and its threads' stacks, socket and HTTP buffers, the
//! torrent's metadata and bookkeeping. RSS is also sampled every 50 ms while the file streams
//! (the largest sample is reported), and the engine's own account (`memory.peak` in
//! `/api/status`) must stay within its budget.
//!
//! The seeder is not rate-limited: the reader is the bottleneck, as a player is. The whole test
//! is bounded (a stall fails it rather than hanging); nothing asserts on wall-clock time.

mod stream_support;

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shoal_testkit::*;
use stream_support::*;

const FILE_BYTES: u64 = 512 << 20;
const BUDGET_MIB: u64 = 64;
/// What the process may hold beyond the piece budget (see the module comment).
const OVERHEAD_MIB: u64 = 48;
const PIECE_KIB: u32 = 256;
const CHUNK: usize = 1 << 20;
/// Bound on streaming the whole file: it normally takes well under a minute on loopback.
const STREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// Samples VmRSS of one process every 50 ms until stopped; returns the largest sample (KiB).
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                match proc_memory(pid) {
                    Ok(m) => max = max.max(m.rss_kib),
                    Err(_) => break, // the process is gone: the test reports that
                }
                thread::sleep(Duration::from_millis(50));
            }
            max
        });
        RssSampler { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn streaming_512_mib_in_64_mib_of_memory_keeps_rss_bounded_and_bytes_right() {
    if skip_interop() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("shoal-stream-mem-").tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    let source = data.join("big.bin");
    {
        // the kernel's generator is much faster than the testkit's for half a GiB
        let mut random = File::open("/dev/urandom").expect("/dev/urandom").take(FILE_BYTES);
        let mut file = File::create(&source).expect("the source file");
        let copied = io::copy(&mut random, &mut file).expect("writing the source file");
        assert_eq!(copied, FILE_BYTES);
    }
    let opts = TorrentOpts { piece_kib: PIECE_KIB, ..TorrentOpts::default() };
    let torrent = make_torrent(&source, &dir.path().join("big.torrent"), &opts).expect("torrent");
    let seed_opts = PeerOpts { ready_timeout: Duration::from_secs(120), ..PeerOpts::default() };
    let seed = lt_seed(&torrent.path, &data, &seed_opts).expect("libtorrent seed");

    let stream = start_stream(
        &torrent.path,
        seed.addr(),
        &[arg("--max-memory"), arg(format!("{BUDGET_MIB}MiB"))],
    );
    // the memory figures appear once the store is set up (`null` while the phase is "checking")
    let status =
        wait_status(&stream, "memory figures in /api/status", Duration::from_secs(30), |s| {
            !s["memory"].is_null()
        });
    let budget = status["memory"]["budget"].as_u64();
    assert_eq!(budget, Some(BUDGET_MIB << 20), "memory budget in {status}");
    let sampler = RssSampler::start(stream.pid());

    let path = stream.file_path(0).expect("the file's URL");
    let (head, mut body) = open(stream.addr(), "GET", &path, &[]).expect("GET the file");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.content_length(), Some(FILE_BYTES), "{head:?}");
    let mut expected = File::open(&source).expect("the source file");
    let (mut got, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let started = Instant::now();
    let mut offset = 0u64;
    let mut engine_peak = 0;
    let mut next_report = 64 << 20;
    while offset < FILE_BYTES {
        assert!(
            started.elapsed() < STREAM_TIMEOUT,
            "streaming stalled: {offset} of {FILE_BYTES} bytes after {STREAM_TIMEOUT:?}; status {}",
            api_status(&stream)
        );
        let n = (FILE_BYTES - offset).min(CHUNK as u64) as usize;
        body.read_exact(&mut got[..n])
            .unwrap_or_else(|e| panic!("reading the body at {offset}: {e}"));
        expected.read_exact(&mut want[..n]).expect("reading the source");
        if got[..n] != want[..n] {
            let at = got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b).unwrap_or(0);
            panic!("byte {} of the stream differs from the file", offset + at as u64);
        }
        offset += n as u64;
        if offset >= next_report {
            next_report += 64 << 20;
            let status = api_status(&stream);
            engine_peak = engine_peak.max(status["memory"]["peak"].as_u64().unwrap_or(0));
            eprintln!(
                "{} MiB streamed; pieces {}/{}; memory {}",
                offset >> 20,
                status["pieces_have"],
                status["pieces_total"],
                status["memory"]
            );
        }
    }
    let mut rest = [0u8; 1];
    assert_eq!(body.read(&mut rest).expect("the end of the body"), 0, "bytes after the end");
    let elapsed = started.elapsed();

    let status = api_status(&stream);
    engine_peak = engine_peak.max(status["memory"]["peak"].as_u64().unwrap_or(0));
    let max_sample = sampler.finish();
    let hwm = proc_memory(stream.pid()).expect("VmHWM of shoal").hwm_kib;
    eprintln!(
        "streamed {} MiB in {elapsed:.1?}; shoal VmHWM {} MiB, largest VmRSS sample {} MiB, \
         engine peak {} MiB of a {BUDGET_MIB} MiB budget",
        FILE_BYTES >> 20,
        hwm / 1024,
        max_sample / 1024,
        engine_peak >> 20
    );
    assert!(
        engine_peak <= BUDGET_MIB << 20,
        "the engine's own peak {engine_peak} exceeds its budget"
    );
    let bound_kib = (BUDGET_MIB + OVERHEAD_MIB) * 1024;
    assert!(
        hwm <= bound_kib,
        "peak RSS {} KiB is over the bound {} KiB ({BUDGET_MIB} MiB budget + {OVERHEAD_MIB} MiB)",
        hwm,
        bound_kib
    );
}
