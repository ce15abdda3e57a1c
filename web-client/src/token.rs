//! Reading (not verifying: only the server can) the join token's claims, so the client can greet
//! the participant and explain an expired link before connecting.

use base64::Engine;
use jinke_signaling::Role;
use serde::Deserialize;

/// The claims of a join token that the client uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    /// The lesson the token admits to.
    pub lesson: String,
    /// Display name.
    pub name: String,
    /// Role in the lesson.
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Reads the claims from a JWT's payload; `None` if it is not a readable join token.
pub fn read(token: &str) -> Option<TokenInfo> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_payload_and_rejects_garbage() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"lesson":"l1","sub":"s","name":"王芳","role":"student","iat":1,"exp":99}"#);
        let info = read(&format!("h.{payload}.sig")).unwrap();
        assert_eq!(info.name, "王芳");
        assert_eq!(info.role, Role::Student);
        assert_eq!(info.exp, 99);
        assert_eq!(read("nonsense"), None);
        assert_eq!(read("a.!!!.c"), None);
    }
}
