//! HTTP trackers (BEP 3, 7, 23, 48): announce and scrape over a GET query string, answered
//! with a bencoded dictionary.
//!
//! The client side builds URLs ([`announce_url`], [`scrape_url`]) and parses answers
//! ([`parse_announce_response`], [`parse_scrape_response`]); the server side parses queries
//! ([`parse_announce_query`], [`parse_scrape_query`]) and encodes answers
//! ([`encode_announce_response`], [`encode_scrape_response`], [`encode_failure`]).

mod response;
mod server;
mod url;

pub use response::{parse_announce_response, parse_scrape_response, HttpError};
pub use server::{
    encode_announce_response, encode_failure, encode_scrape_response, parse_announce_query,
    parse_scrape_query, PeerFormat, QueryError, ServerAnnounce, MAX_QUERY_SCRAPE_HASHES,
};
pub use url::{announce_url, scrape_url, scrape_url_for};
