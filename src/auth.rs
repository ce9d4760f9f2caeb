//! Who is signed in and what they may do: accounts, argon2id passwords, JWTs, CSRF tokens and
//! sign-in throttling. HTTP concerns (cookies, headers) live in `web::access`.

pub mod accounts;
pub mod csrf;
pub mod password;
pub mod throttle;
pub mod token;

use std::fmt;

use serde::Serialize;

use crate::policy::Permission;

/// A staff e-mail address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let email = raw.trim().to_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(format!("`{}` is not an e-mail address (no @)", raw.trim()));
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
            return Err(format!("`{}` is not a valid e-mail address", raw.trim()));
        }
        Ok(Email(email))
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
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
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
