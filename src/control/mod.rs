//! The request socket: protocol, server, callbacks, and the client (supctl).

pub mod callbacks;
pub mod client;
pub mod protocol;
pub mod server;
