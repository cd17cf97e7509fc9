//! The protocol layer: what every other layer speaks. Protocol eras, JSON-RPC messages
//! read lazily, the error vocabulary, event streams. Imports nothing of the data plane.

pub mod codes;
pub mod era;
pub mod error;
pub mod event_stream;
pub mod headers;
pub mod message;
pub mod redact;
