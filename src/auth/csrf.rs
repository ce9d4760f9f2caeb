//! CSRF tokens bound to the session: HMAC(key, binding), where the binding is the session
//! token's id for signed-in users and a random pre-session cookie for the sign-in form. A
//! request's token must match its own binding, so a token from another session is useless.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct CsrfKey(Vec<u8>);

impl CsrfKey {
    pub fn new(secret: &[u8]) -> CsrfKey {
        // A key separate from the token-signing key, derived from the same secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length works");
        mac.update(b"fairseg csrf key");
        CsrfKey(mac.finalize().into_bytes().to_vec())
    }

    pub fn token_for(&self, binding: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length works");
        mac.update(binding.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time comparison of a presented token with the expected one.
    pub fn verify(&self, binding: &str, presented: &str) -> bool {
        let Ok(presented) = hex::decode(presented) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length works");
        mac.update(binding.as_bytes());
        mac.verify_slice(&presented).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_their_binding() {
        let key = CsrfKey::new(b"secret");
        let t = key.token_for("session-1");
        assert!(key.verify("session-1", &t));
        assert!(!key.verify("session-2", &t));
        assert!(!key.verify("session-1", "zz"));
        assert!(!CsrfKey::new(b"other").verify("session-1", &t));
    }
}
