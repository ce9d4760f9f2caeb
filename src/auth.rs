//! Who is signed in and what they may do: the signed-in user, argon2id passwords, JWTs, CSRF
//! tokens and sign-in throttling. Account use cases (stored, in the trail) live in
//! `app::accounts`; HTTP concerns (cookies, headers) in `web::access`.

pub mod csrf;
pub mod password;
pub mod throttle;
pub mod token;

use std::fmt;

use serde::Serialize;

use crate::policy::Permission;

/// A staff e-mail address: NFKC-normalised, trimmed and lower-cased, its domain in ASCII
/// (IDNA). Addresses that could pass for another are refused: a local part with invisible or
/// direction-changing characters, with characters outside RFC 5322's unquoted set (`<`, `>`,
/// quotes, ...), or mixing scripts (a Cyrillic `а` among Latin letters); likewise a domain
/// label mixing scripts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Email(String);

/// The ASCII characters RFC 5322 allows in an unquoted local part, besides letters and digits.
const LOCAL_PART_SYMBOLS: &str = "!#$%&'*+-/=?^_`{|}~.";

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        use unicode_normalization::UnicodeNormalization;
        use unicode_security::{GeneralSecurityProfile, MixedScript};
        let shown = raw.trim();
        let invalid = || format!("`{}` is not a valid e-mail address", shown.escape_debug());
        let email: String = shown.nfkc().collect::<String>().to_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(format!(
                "`{}` is not an e-mail address (no @)",
                shown.escape_debug()
            ));
        };
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
            || email.len() > 254
        {
            return Err(invalid());
        }
        let unsafe_char = local.chars().find(|&c| {
            if c.is_ascii() {
                !(c.is_ascii_alphanumeric() || LOCAL_PART_SYMBOLS.contains(c))
            } else {
                !c.identifier_allowed()
            }
        });
        if let Some(c) = unsafe_char {
            return Err(format!(
                "`{}` is not accepted: the part before @ holds {}, which addresses of staff may not hold",
                shown.escape_debug(),
                if c.is_ascii() {
                    format!("`{c}`")
                } else {
                    format!("the invisible or unusual character U+{:04X}", c as u32)
                }
            ));
        }
        if !local.is_single_script() {
            return Err(format!(
                "`{}` is not accepted: the part before @ mixes scripts (such as Latin and Cyrillic letters that look alike)",
                shown.escape_debug()
            ));
        }
        if domain.split('.').any(|label| !label.is_single_script()) {
            return Err(format!(
                "`{}` is not accepted: the domain mixes scripts",
                shown.escape_debug()
            ));
        }
        let domain = match url::Host::parse(domain) {
            Ok(url::Host::Domain(d)) => d,
            _ => return Err(invalid()),
        };
        Ok(Email(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the length rule (NIST SP 800-63B: at least 12 characters, long
/// passphrases allowed; the upper bound keeps argon2's input reasonable).
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: String) -> Result<Password, String> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(format!(
                "the password must have at least {} characters",
                Self::MIN_CHARS
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(format!(
                "the password must have at most {} characters",
                Self::MAX_CHARS
            ));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The signed-in user of a request, as verified against the database.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentUser {
    pub id: String,
    pub email: String,
    pub role: String,
    #[serde(skip)]
    pub permissions: Vec<Permission>,
    /// The token's id and expiry, to sign out exactly this session.
    #[serde(skip)]
    pub jti: String,
    #[serde(skip)]
    pub expires_at: chrono::NaiveDateTime,
    #[serde(skip)]
    pub via_cookie: bool,
}

impl CurrentUser {
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "@x.com",
            "ana@",
            "ana@x",
            "a b@x.com",
            "a@b@x.com",
            "a@x.com.",
            // Look-alikes: a Cyrillic а, a zero-width joiner, a right-to-left override, markup.
            "\u{430}dmin@example.com",
            "ad\u{200d}min@example.com",
            "admin\u{202e}moc.elpmaxe@example.com",
            "<script>alert(1)</script>@example.com",
            "admin@ex\u{430}mple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
        // Compatibility forms fold (full-width letters), domains go to ASCII, and a local
        // part in one script other than Latin is fine.
        assert_eq!(
            Email::parse("\u{ff41}na@Example.com").unwrap().as_str(),
            "ana@example.com"
        );
        assert_eq!(
            Email::parse("ana@bücher.example").unwrap().as_str(),
            "ana@xn--bcher-kva.example"
        );
        assert!(Email::parse("\u{430}\u{43d}\u{43d}\u{430}@example.com").is_ok());
        assert!(Email::parse("o'brien+ops@example.com").is_ok());
    }

    #[test]
    fn passwords_have_a_minimum_length() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("correct horse battery".into()).is_ok());
        assert!(Password::parse("x".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("a very secret one".into()).unwrap()),
            "Password(***)"
        );
    }
}
