//! HTTP(S) tracker requests over reqwest.

use shoal_proto::InfoHash;
use shoal_tracker_proto::http as wire;
use shoal_tracker_proto::{AnnounceRequest, AnnounceResponse, ScrapeResponse};

use super::{TrackerClientConfig, TrackerError};

pub(super) async fn announce(
    client: &reqwest::Client,
    config: &TrackerClientConfig,
    base: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    let body = get(client, config, &wire::announce_url(base, req)).await?;
    Ok(wire::parse_announce_response(&body)?)
}

pub(super) async fn scrape(
    client: &reqwest::Client,
    config: &TrackerClientConfig,
    announce: &str,
    info_hashes: &[InfoHash],
) -> Result<ScrapeResponse, TrackerError> {
    let base = wire::scrape_url(announce)
        .ok_or_else(|| TrackerError::ScrapeUnsupported(announce.to_owned()))?;
    let body = get(client, config, &wire::scrape_url_for(&base, info_hashes)).await?;
    Ok(wire::parse_scrape_response(&body)?)
}

/// GETs `url` and returns the body, refusing it once it grows past the configured limit
/// (whether or not the server announced its length). A non-success status is an error, but
/// a bencoded `failure reason` in its body wins, since some trackers send one with a 4xx.
async fn get(
    client: &reqwest::Client,
    config: &TrackerClientConfig,
    url: &str,
) -> Result<Vec<u8>, TrackerError> {
    let limit = config.max_response_bytes;
    let mut response = client.get(url).send().await.map_err(from_reqwest)?;
    let status = response.status();
    if response.content_length().is_some_and(|len| len > limit as u64) {
        return Err(TrackerError::ResponseTooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(TrackerError::ResponseTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        if let Err(wire::HttpError::Failure(reason)) = wire::parse_announce_response(&body) {
            return Err(TrackerError::Failure(reason));
        }
        return Err(TrackerError::HttpStatus(status.as_u16()));
    }
    Ok(body)
}

fn from_reqwest(e: reqwest::Error) -> TrackerError {
    if e.is_timeout() {
        TrackerError::Timeout
    } else if e.is_builder() {
        TrackerError::InvalidUrl(error_chain(&e))
    } else {
        TrackerError::Http(error_chain(&e))
    }
}

/// reqwest's own message is terse ("error sending request"); the causes say what happened.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
