//! Jinke (金课): a real-time streaming classroom server.
//!
//! This crate is the server around the media core: configuration, lessons and their database, the
//! school REST API, join tokens, rooms, signaling sessions and the embedded web client. `jinke
//! serve` (in `main.rs`) runs a [`server::Server`].

pub mod api;
pub mod attendance;
pub mod config;
pub mod controls;
pub mod events;
pub mod recorder;
pub mod rooms;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod store;
pub mod tokens;
pub mod web;
pub mod webhooks;

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random secret (API key, webhook secret): 32 random bytes in hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex(&bytes)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
