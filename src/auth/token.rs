//! Signed session tokens (JWT, HS256). Validation is explicit: the algorithm is pinned, `exp`,
//! `iss` and `sub` are required, and the leeway is small.

use chrono::{DateTime, NaiveDateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "fairseg";
const LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique per token, so one session can be signed out alone.
    pub jti: String,
    /// The user's token version when issued; a password or role change bumps it.
    pub ver: i64,
}

impl Claims {
    pub fn expires_at(&self) -> NaiveDateTime {
        DateTime::<Utc>::from_timestamp(self.exp, 0)
            .unwrap_or_default()
            .naive_utc()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the session has expired; sign in again")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

/// Keys and lifetime for session tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: chrono::Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: chrono::Duration) -> TokenKeys {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    pub fn ttl(&self) -> chrono::Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: &str, token_version: i64) -> (String, Claims) {
        let now = Utc::now();
        let claims = Claims {
            sub: user_id.to_string(),
            iss: ISSUER.to_string(),
            iat: now.timestamp(),
            exp: (now + self.ttl).timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            ver: token_version,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, claims)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        // A token may not live longer than the server issues them for, nor be issued in the
        // future: a validly signed token with `exp` years ahead (a leaked key, an old build,
        // a longer TTL since lowered) is refused.
        let now = Utc::now().timestamp();
        let leeway = LEEWAY_SECONDS as i64;
        if claims.exp - claims.iat > self.ttl.num_seconds() + leeway || claims.iat > now + leeway {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            chrono::Duration::minutes(30),
        )
    }

    #[test]
    fn a_fresh_token_verifies_with_its_claims() {
        let (token, claims) = keys().issue("u1", 3);
        assert_eq!(keys().verify(&token).unwrap(), claims);
        assert_eq!(claims.exp - claims.iat, 30 * 60);
    }

    #[test]
    fn tokens_signed_with_another_key_are_refused() {
        let other = TokenKeys::new(
            b"another-secret-another-secret-xx",
            chrono::Duration::minutes(30),
        );
        let (token, _) = other.issue("u1", 0);
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_and_altered_claims_are_refused() {
        let (token, _) = keys().issue("u1", 0);
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            keys().verify(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "admin".into();
        let altered = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            keys().verify(&format!("{}.{altered}.{}", parts[0], parts[2])),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_living_longer_than_the_ttl_or_issued_in_the_future_are_refused() {
        let long = TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            chrono::Duration::days(3650),
        );
        let (token, _) = long.issue("u1", 0);
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
        let (token, _) = keys().issue("u1", 0);
        assert!(long.verify(&token).is_ok(), "a shorter life is fine");
    }

    #[test]
    fn expired_tokens_are_refused_as_expired() {
        let expired = TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            chrono::Duration::minutes(-10),
        );
        let (token, _) = expired.issue("u1", 0);
        assert_eq!(keys().verify(&token), Err(TokenError::Expired));
    }
}
