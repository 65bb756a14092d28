//! HTTP servers for web seed tests (BEP 19): Debian's nginx serving a folder on loopback, with
//! a config written to a temp folder and run in the foreground as one process (killed by PID
//! when its guard drops), and a deliberately broken server of our own that promises a body and
//! closes the connection halfway through it.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::net::{free_port, loopback_ip};
use crate::paths::require_tool;
use crate::process::ChildGuard;

/// How long nginx may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Options for [`nginx`].
#[derive(Clone, Debug, Default)]
pub struct NginxOpts {
    /// `limit_rate` for every response, bytes per second (per connection); `None`: unlimited.
    pub limit_rate: Option<u64>,
    /// Answer browsers from any origin (CORS), exposing `Content-Range`, as a web seed for
    /// web pages must.
    pub cors: bool,
}

/// A running nginx; stopped when dropped (the guard goes first, then its folder).
pub struct Nginx {
    process: ChildGuard,
    addr: SocketAddr,
    prefix: tempfile::TempDir,
}

/// Starts nginx on a fresh loopback address serving `root` (GET with Range support, as
/// nginx does for static files).
pub fn nginx(root: &Path, opts: &NginxOpts) -> Result<Nginx> {
    let program = require_tool("nginx").or_else(|e| {
        let sbin = PathBuf::from("/usr/sbin/nginx");
        if sbin.is_file() {
            Ok(sbin)
        } else {
            Err(e)
        }
    })?;
    let ip = loopback_ip();
    let port = free_port(ip)?;
    let prefix = tempfile::Builder::new()
        .prefix("shoal-nginx-")
        .tempdir()
        .map_err(|e| Error::io("creating nginx's folder", e))?;
    let root = root.canonicalize().map_err(|e| Error::io(format!("{}", root.display()), e))?;
    let conf = prefix.path().join("nginx.conf");
    std::fs::write(&conf, config(prefix.path(), &root, ip, port, opts))
        .map_err(|e| Error::io("writing nginx.conf", e))?;
    let mut cmd = Command::new(program);
    cmd.arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(prefix.path().join("error.log"))
        // One process in the foreground: the guard's PID is the whole server.
        .arg("-g")
        .arg("daemon off; master_process off;");
    let mut process = ChildGuard::spawn(format!("nginx@{ip}:{port}"), cmd)?;
    let addr = SocketAddr::from((ip, port));
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(status) = process.wait_exit(Duration::from_millis(50)) {
            let log = std::fs::read_to_string(prefix.path().join("error.log")).unwrap_or_default();
            return Err(Error::Setup(format!("nginx exited ({status}) at start:\n{log}")));
        }
        if Instant::now() >= deadline {
            return Err(Error::Setup(format!("nginx did not listen on {addr} in time")));
        }
    }
    Ok(Nginx { process, addr, prefix })
}

fn config(prefix: &Path, root: &Path, ip: Ipv4Addr, port: u16, opts: &NginxOpts) -> String {
    let p = prefix.display();
    // As root, workers would run as `nobody`, who cannot read a test's private temp folder.
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    let limit = opts.limit_rate.map_or(String::new(), |r| format!("limit_rate {r};"));
    let cors = match opts.cors {
        true => "add_header Access-Control-Allow-Origin * always;
        add_header Access-Control-Expose-Headers \"Content-Range, Content-Length, Accept-Ranges\" always;",
        false => "",
    };
    format!(
        "{user}
worker_processes 1;
pid {p}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen {ip}:{port};
        root {root};
        {limit}
        {cors}
    }}
}}
",
        root = root.display()
    )
}

impl Nginx {
    /// `http://IP:PORT/` + `path` (not encoded: give it as it should appear in the URL).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access log so far, for failure messages and for counting requests.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("access.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// A server that answers every GET with `206 Partial Content`, the asked `Content-Range` and
/// `Content-Length`, then sends half the body (zeros) and closes the connection.
pub struct TruncatingServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a [`TruncatingServer`] on a fresh loopback address; `file_length` is the total its
/// `Content-Range` headers claim.
pub fn truncating_server(file_length: u64) -> Result<TruncatingServer> {
    let ip = loopback_ip();
    let listener = TcpListener::bind((ip, 0)).map_err(|e| Error::io("binding", e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("local address", e))?;
    listener.set_nonblocking(true).map_err(|e| Error::io("set_nonblocking", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let (stop2, requests2) = (stop.clone(), requests.clone());
    let thread = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    requests2.fetch_add(1, Ordering::Relaxed);
                    let _ = answer_half(stream, file_length);
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Ok(TruncatingServer { addr, stop, requests, thread: Some(thread) })
}

fn answer_half(stream: TcpStream, file_length: u64) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let (mut start, mut last) = (0, file_length.saturating_sub(1));
    // Headers, bounded: at most 100 lines.
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(range) = lower.strip_prefix("range: bytes=") {
            if let Some((a, b)) = range.trim().split_once('-') {
                start = a.parse().unwrap_or(0);
                last = b.parse().unwrap_or(last);
            }
        }
    }
    let len = last + 1 - start;
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{last}/{file_length}\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    out.write_all(&vec![0u8; (len / 2) as usize])?;
    out.flush()
    // Dropped here: the connection closes with half the body unsent.
}

impl TruncatingServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Connections served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for TruncatingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
