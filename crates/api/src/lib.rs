//! The RPC gateway and the Sas operations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod encoding;
pub mod signature;
