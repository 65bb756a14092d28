//! uTP (BEP 29), the datagram transport most BitTorrent clients prefer, with LEDBAT congestion
//! control, sans IO: [`Endpoint`] demultiplexes one UDP socket's datagrams to
//! [`Connection`]s, each a reliable byte stream the peer wire protocol runs over as it does
//! over TCP. The native driver puts it on the listen port's UDP side; the simulator can drive
//! it with a virtual clock.

mod conn;
mod endpoint;
pub mod ledbat;
pub mod packet;

pub use conn::{CloseReason, ConnStats, Connection, UtpConfig};
pub use endpoint::{ConnId, Endpoint, EndpointLimits, Received};

#[cfg(test)]
mod tests;
