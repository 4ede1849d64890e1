//! posture-agent as a library: what the `posture-agent` binary runs, and what `posture serve
//! --demo` runs in-process for each demo server (one thread each, the same client over loopback
//! HTTP).
#![forbid(unsafe_code)]

pub mod enroll;
pub mod run;
pub mod state;
pub mod transport;
