//! TLS: certificates checked at load ([`certs`]) or obtained by ACME
//! ([`acme`]), listeners with SNI and
//! client certificates ([`listener`]), and TLS to origins ([`upstream`]).

pub(crate) mod acme;
pub(crate) mod certs;
pub(crate) mod listener;
pub(crate) mod ocsp;
pub(crate) mod tickets;
pub(crate) mod upstream;
