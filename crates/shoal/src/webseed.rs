//! The native side of HTTP web seeds (BEP 19): carries out the core's
//! [`Action::FetchWebSeed`](shoal_proto::torrent::Action::FetchWebSeed) with reqwest (rustls,
//! no OpenSSL). What to request and whether an answer is acceptable is decided by the sans-IO
//! [`shoal_proto::webseed`], which the browser driver shares; this module only moves bytes:
//! one connection pool for the session, bounded time for every request, bounded redirects,
//! and a body never read past the bytes asked for.

use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use shoal_proto::webseed::{self, Assembler, FetchEnd, FetchPlan, WebSeedError};
use tokio::sync::oneshot;

use crate::tracker::http::error_chain;

#[derive(Clone, Debug)]
pub struct WebSeedClientConfig {
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Each request may take this long plus [`Self::min_rate`]'s time for its bytes.
    pub base_timeout: Duration,
    /// Bytes per second below which a request is given up.
    pub min_rate: u64,
    pub max_redirects: usize,
    pub user_agent: String,
}

impl Default for WebSeedClientConfig {
    fn default() -> Self {
        WebSeedClientConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(20),
            base_timeout: Duration::from_secs(30),
            min_rate: 32 * 1024,
            max_redirects: 5,
            user_agent: concat!("Shoal/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// The session's HTTP client for web seeds; cheap to share.
#[derive(Clone)]
pub struct WebSeedClient {
    http: reqwest::Client,
    config: WebSeedClientConfig,
    /// The process's download cap: every body chunk waits its turn.
    download_cap: crate::rate::RateCap,
}

impl WebSeedClient {
    pub fn new(config: WebSeedClientConfig) -> Result<Self, WebSeedError> {
        // reqwest is built without a bundled crypto provider (see the tracker client).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(config.max_redirects))
            .build()
            .map_err(|e| WebSeedError::Transport(error_chain(&e)))?;
        Ok(WebSeedClient { http, config, download_cap: crate::rate::RateCap::new(None) })
    }

    /// Makes every body chunk wait on `cap` (the session's download cap).
    pub fn with_download_cap(mut self, cap: crate::rate::RateCap) -> Self {
        self.download_cap = cap;
        self
    }

    /// Fetches every request of `plan` in turn and returns the plan's bytes (padding as
    /// zeros). The first bad answer ends the fetch; `cancel` firing (or its sender going away)
    /// ends it with the bytes that had arrived.
    pub async fn fetch(&self, plan: &FetchPlan, cancel: oneshot::Receiver<()>) -> FetchEnd {
        let mut assembler = Assembler::new(plan);
        let finished = {
            let work = self.fetch_into(plan, &mut assembler);
            tokio::pin!(work);
            tokio::select! {
                result = &mut work => Some(result),
                _ = cancel => None,
            }
        };
        match finished {
            Some(Ok(())) => match assembler.finish() {
                Ok(data) => FetchEnd::Complete(data),
                Err(e) => FetchEnd::Failed(e),
            },
            Some(Err(e)) => FetchEnd::Failed(e),
            None => FetchEnd::Cancelled(assembler.into_prefix()),
        }
    }

    async fn fetch_into(
        &self,
        plan: &FetchPlan,
        assembler: &mut Assembler,
    ) -> Result<(), WebSeedError> {
        for (index, request) in plan.requests.iter().enumerate() {
            // A download cap below the slowest rate we accept stretches the allowance with it.
            let min_rate = self.config.min_rate.min(self.download_cap.rate().unwrap_or(u64::MAX));
            let timeout =
                self.config.base_timeout + Duration::from_secs(request.len() / min_rate.max(1));
            let transport = |e: reqwest::Error| {
                WebSeedError::Transport(format!("{}: {}", request.url, error_chain(&e)))
            };
            let mut response = self
                .http
                .get(&request.url)
                .header(RANGE, request.range_header())
                .timeout(timeout)
                .send()
                .await
                .map_err(transport)?;
            let content_range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok());
            webseed::check_response(
                request,
                response.status().as_u16(),
                content_range,
                response.content_length(),
            )?;
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                assembler.push(index, &chunk)?;
                self.download_cap.acquire(chunk.len()).await;
            }
            assembler.end(index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use shoal_proto::webseed::HttpRange;

    /// A server that answers one range request with `sent` of its 64 KiB and then stalls.
    async fn stalling_server(sent: usize) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 206 Partial Content\r\ncontent-length: 65536\r\n\
                        content-range: bytes 0-65535/65536\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            let body: Vec<u8> = (0..sent).map(|i| i as u8).collect();
            socket.write_all(&body).await.unwrap();
            // Stalls with the connection open, as a server behind a busy uplink does.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        (addr, task)
    }

    fn plan(addr: std::net::SocketAddr) -> FetchPlan {
        let request = HttpRange {
            url: format!("http://{addr}/f.bin"),
            file: 0,
            start: 0,
            end: 65536,
            file_length: 65536,
            torrent_offset: 0,
        };
        FetchPlan { range: 0..65536, requests: vec![request] }
    }

    /// A cancelled fetch ends at once with the bytes that had arrived, not after the server's
    /// stall or the read timeout.
    #[tokio::test]
    async fn a_cancelled_fetch_returns_what_arrived() {
        let (addr, server) = stalling_server(20_000).await;
        let client = WebSeedClient::new(WebSeedClientConfig::default()).unwrap();
        let (stop, cancel) = oneshot::channel();
        let plan = plan(addr);
        let fetch = tokio::spawn(async move { client.fetch(&plan, cancel).await });
        // Let the 20,000 bytes arrive, then stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), fetch).await.unwrap().unwrap();
        match end {
            // All 20,000 bytes have arrived unless the machine is very busy: never more, and
            // exactly what the server sent.
            FetchEnd::Cancelled(prefix) => {
                assert!(prefix.len() <= 20_000, "{} bytes", prefix.len());
                assert!(prefix.iter().enumerate().all(|(i, &b)| b == i as u8));
            }
            other => panic!("expected a cancel, got {other:?}"),
        }
        server.abort();
    }
}
