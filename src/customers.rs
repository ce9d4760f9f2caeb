//! Customers: who they are (an external id and attributes), what they bought, and the
//! pseudonyms by which the trail names them. Domain code here knows nothing of HTTP or SQL.

pub mod features;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The id the company knows a customer by, as it appears in imports and URLs. Personal data:
/// it is stored only in `customers.external_id` and leaves the database on erasure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CustomerId(String);

pub const MAX_CUSTOMER_ID_LEN: usize = 128;

impl CustomerId {
    pub fn parse(raw: &str) -> Result<CustomerId, String> {
        let id = raw.trim();
        if id.is_empty() {
            return Err("the customer id is empty".into());
        }
        if id.len() > MAX_CUSTOMER_ID_LEN {
            return Err(format!(
                "the customer id is longer than {MAX_CUSTOMER_ID_LEN} bytes"
            ));
        }
        if id.chars().any(char::is_control) {
            return Err("the customer id contains a control character".into());
        }
        Ok(CustomerId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns customer ids into pseudonyms: `c_` and the first 128 bits of HMAC-SHA-256 under a
/// server secret, hex. The trail, the erasure register and the request log use these, so
/// erasing a customer removes the raw id everywhere while the hash chain stays intact, and a
/// re-import of an erased id can still be recognised. Without the key, a pseudonym cannot be
/// reversed by trying candidate ids.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// The MAC with the key already absorbed: cloning it saves hashing the key's two pads
    /// again for each of the millions of ids an import names.
    keyed: Hmac<Sha256>,
}

/// The name of the pseudonym key in `server_secrets`; kept apart from the token signing key
/// so that rotating the latter never changes a pseudonym.
pub const PSEUDONYM_KEY_SECRET: &str = "customer_pseudonym_key";

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer {
            keyed: Hmac::<Sha256>::new_from_slice(key).expect("any key length works"),
        }
    }

    pub fn pseudonym(&self, id: &CustomerId) -> String {
        let mut mac = self.keyed.clone();
        mac.update(id.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(2 + 32);
        out.push_str("c_");
        for b in &digest[..16] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_trimmed_and_bad_ones_are_refused_with_a_reason() {
        assert_eq!(CustomerId::parse("  00042 ").unwrap().as_str(), "00042");
        assert!(CustomerId::parse("").unwrap_err().contains("empty"));
        assert!(
            CustomerId::parse("a\u{0}b")
                .unwrap_err()
                .contains("control")
        );
        assert!(
            CustomerId::parse(&"x".repeat(129))
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_between_keys() {
        let id = CustomerId::parse("C-1001").unwrap();
        let a = Pseudonymizer::new(b"key one");
        let b = Pseudonymizer::new(b"key two");
        assert_eq!(a.pseudonym(&id), a.pseudonym(&id));
        assert_ne!(a.pseudonym(&id), b.pseudonym(&id));
        assert_eq!(a.pseudonym(&id).len(), 2 + 32);
        assert!(!a.pseudonym(&id).contains("1001"));
        // The form stored pseudonyms have: `c_` and 32 lowercase hex digits.
        let digest = Hmac::<Sha256>::new_from_slice(b"key one")
            .unwrap()
            .chain_update(b"C-1001")
            .finalize()
            .into_bytes();
        assert_eq!(
            a.pseudonym(&id),
            format!("c_{}", hex::encode(&digest[..16]))
        );
    }
}
