//! Preference links: a signed, expiring token (JWT, HS256) that lets a customer see and
//! withdraw their consents without an account. The token names the customer by pseudonym, never
//! by their id, so a link that leaks from a mailbox reveals nobody's customer number.
//!
//! Its key is derived from the server secret apart from the session-token key, and its audience
//! is `preferences`: a staff session token is never a valid link, and a link never a session.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const AUDIENCE: &str = "preferences";
const LEEWAY_SECONDS: u64 = 5;
/// How long a link works unless asked otherwise.
pub const DEFAULT_TTL: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkClaims {
    /// The customer's pseudonym.
    pub sub: String,
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique per link.
    pub jti: String,
}

impl LinkClaims {
    pub fn expires_at(&self) -> NaiveDateTime {
        DateTime::<Utc>::from_timestamp(self.exp, 0)
            .unwrap_or_default()
            .naive_utc()
    }
}

/// Why a link is refused. The customer is told the same for each: the distinction is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link is not valid")]
    Invalid,
}

#[derive(Clone)]
pub struct PreferenceLinks {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl PreferenceLinks {
    pub fn new(secret: &[u8]) -> PreferenceLinks {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length works");
        mac.update(b"fairseg preference link key");
        let key = mac.finalize().into_bytes();
        PreferenceLinks {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
        }
    }

    /// A link token for the customer with this pseudonym, valid for `ttl` from `now`.
    pub fn issue(
        &self,
        pseudonym: &str,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> (String, LinkClaims) {
        let claims = LinkClaims {
            sub: pseudonym.to_string(),
            aud: AUDIENCE.to_string(),
            iss: crate::auth::token::ISSUER.to_string(),
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, claims)
    }

    pub fn verify(&self, token: &str) -> Result<LinkClaims, LinkError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[crate::auth::token::ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => LinkError::Expired,
                _ => LinkError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::TokenKeys;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_link_verifies_and_names_the_pseudonym() {
        let links = PreferenceLinks::new(SECRET);
        let (token, claims) = links.issue("c_abc", Utc::now(), DEFAULT_TTL);
        assert_eq!(links.verify(&token).unwrap(), claims);
        assert_eq!(claims.exp - claims.iat, 7 * 24 * 3600);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let links = PreferenceLinks::new(SECRET);
        let (old, _) = links.issue("c_abc", Utc::now() - TimeDelta::days(8), DEFAULT_TTL);
        assert_eq!(links.verify(&old), Err(LinkError::Expired));
        let (token, _) = links.issue("c_abc", Utc::now(), DEFAULT_TTL);
        let mut tampered = token.clone();
        tampered.insert(token.len() - 3, 'x');
        assert_eq!(links.verify(&tampered), Err(LinkError::Invalid));
        assert_eq!(
            PreferenceLinks::new(b"another secret, another secret!!").verify(&token),
            Err(LinkError::Invalid)
        );
        // A staff session token under the same server secret is not a link, and vice versa.
        let sessions = TokenKeys::new(SECRET, TimeDelta::minutes(30));
        let (session, _) = sessions.issue("user-1", 0);
        assert_eq!(links.verify(&session), Err(LinkError::Invalid));
        assert!(sessions.verify(&token).is_err());
    }
}
