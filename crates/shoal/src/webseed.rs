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
        Ok(WebSeedClient { http, config })
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
            let timeout = self.config.base_timeout
                + Duration::from_secs(request.len() / self.config.min_rate.max(1));
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
            }
            assembler.end(index)?;
        }
        Ok(())
    }
}
