//! `jinke-load`: a load generator that behaves like real classes. It creates lessons and tokens
//! through the REST API, joins through signaling, and runs WebRTC with str0m (no decoding), so one
//! core can simulate many receive-only students. Publishers send a real VP8 clip and Opus audio;
//! receivers measure join time, loss, duplicates, integrity and latency; the server's CPU and
//! memory come from `/proc`.

pub mod client;
pub mod janus;
pub mod media;
pub mod metrics;
pub mod scenario;

pub use scenario::{LoadConfig, Report, Scenario, Target, run, run_blocking};
