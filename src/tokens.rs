//! Signed join tokens (JWT, HS256): what a school hands a teacher or student so that they can join
//! one lesson, as one identity, in one role, until the token expires.

use jinke_signaling::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims a join token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    /// The lesson this token admits to.
    pub lesson: String,
    /// The participant's identity (JWT subject).
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Role in the lesson.
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token has expired.
    #[error("the join token has expired")]
    Expired,
    /// Bad signature, malformed, or wrong algorithm.
    #[error("the join token is not valid: {0}")]
    Invalid(String),
}

/// Signs and checks join tokens with the server's secret.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenSigner {
    /// A signer with this secret (at least 32 random bytes; an empty one is refused).
    pub fn new(secret: &[u8]) -> Result<TokenSigner, jsonwebtoken::errors::Error> {
        Ok(TokenSigner {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
        })
    }

    /// Signs claims into a token.
    pub fn sign(&self, claims: &JoinClaims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Checks a token's signature and expiry (no leeway) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<JoinClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<JoinClaims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> JoinClaims {
        JoinClaims {
            lesson: "l1".into(),
            sub: "s1".into(),
            name: "王芳".into(),
            role: Role::Student,
            iat: 0,
            exp,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips() {
        let s = TokenSigner::new(&[7; 32]).unwrap();
        let c = claims(now() + 60);
        assert_eq!(s.verify(&s.sign(&c)).unwrap(), c);
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let s = TokenSigner::new(&[7; 32]).unwrap();
        assert!(matches!(
            s.verify(&s.sign(&claims(now() - 1))),
            Err(TokenError::Expired)
        ));
        let other = TokenSigner::new(&[8; 32]).unwrap();
        assert!(matches!(
            s.verify(&other.sign(&claims(now() + 60))),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(s.verify("not.a.jwt"), Err(TokenError::Invalid(_))));
        // An unsigned token ("alg":"none") must not pass.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(s.verify(none).is_err());
    }
}
