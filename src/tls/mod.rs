//! TLS: certificates checked at load ([`certs`]), listeners with SNI and
//! client certificates ([`listener`]), and TLS to origins ([`upstream`]).

pub mod certs;
pub mod listener;
pub mod upstream;
