//! Fetching a `.torrent` over HTTP(S), bounded in size and time.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the response is larger than {0} bytes")]
    TooLarge(u64),
}

/// GETs `url` and returns its body, refusing bodies over `max_len` bytes.
pub async fn fetch_url(url: &str, max_len: u64) -> Result<Vec<u8>, FetchError> {
    // reqwest is built without a bundled TLS crypto provider (see the tracker client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()?;
    let mut response = client.get(url).send().await?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    if response.content_length().is_some_and(|len| len > max_len) {
        return Err(FetchError::TooLarge(max_len));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() as u64 + chunk.len() as u64 > max_len {
            return Err(FetchError::TooLarge(max_len));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
