//! Signing off a fairness report: the written statement, the canonical form of the report's
//! JSON and its content hash, and what a later view concludes from recomputing them.
//!
//! A signed report is frozen as the canonical JSON of the audit (keys sorted at every level, no
//! insignificant whitespace, numbers as serde_json writes them), so anyone holding the bytes
//! can recompute `sha256:<hex>` (`sha256sum`) and compare it with the hash stored beside the
//! report and in the trail. Written by hand rather than through
//! a `Value`'s own order: serde_json keeps insertion order when any crate in the build turns
//! on `preserve_order`, and the hash must not depend on that.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The shortest and longest statement a sign-off accepts, in characters (after trimming).
pub const MIN_STATEMENT_CHARS: usize = 10;
pub const MAX_STATEMENT_CHARS: usize = 2000;

/// A compliance officer's written statement: trimmed, 10 to 2000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement(String);

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error(
        "the statement must say in writing what you reviewed and why you sign: at least {MIN_STATEMENT_CHARS} characters, got {0}"
    )]
    TooShort(usize),
    #[error("the statement is at most {MAX_STATEMENT_CHARS} characters, got {0}")]
    TooLong(usize),
}

impl Statement {
    pub fn parse(text: &str) -> Result<Statement, StatementError> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars < MIN_STATEMENT_CHARS {
            Err(StatementError::TooShort(chars))
        } else if chars > MAX_STATEMENT_CHARS {
            Err(StatementError::TooLong(chars))
        } else {
            Ok(Statement(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The canonical text of a JSON value: object keys sorted (by their UTF-8 bytes) at every
/// level, no whitespace between tokens, strings and numbers written as serde_json writes them.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(16 * 1024);
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

// Keys and scalars are written by serde_json straight into the buffer: the same bytes as
// their `to_string()`, without two allocations each (an audit has thousands of them, and
// every view of a signed report checks the live one against the signed).
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("a string serialises");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        // Scalars have one compact form already.
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serialises"),
    }
}

/// `sha256:` and the lower-case hex digest of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The top-level fields whose values differ between the signed report and the live one,
/// sorted (a field present on one side only counts as differing).
pub fn changed_fields(signed: &Value, live: &Value) -> Vec<String> {
    let (Value::Object(a), Value::Object(b)) = (signed, live) else {
        return if signed == live {
            Vec::new()
        } else {
            vec!["(whole report)".into()]
        };
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Whether what is stored is still what was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Integrity {
    /// The stored JSON hashes to the stored content hash.
    pub json_matches: bool,
    /// The stored printable HTML hashes to its stored hash.
    pub html_matches: bool,
    /// The hashes recorded in the trail entry `audit.signed` equal the stored ones (`None`:
    /// the trail entry could not be found). Catches a report rewritten together with its
    /// stored hashes: the trail is hash-chained.
    pub trail_matches: Option<bool>,
}

impl Integrity {
    /// Recomputes both hashes of a stored sign-off and compares them, and the trail's record.
    pub fn check(
        report_json: &str,
        content_hash_stored: &str,
        report_html: &str,
        html_hash_stored: &str,
        trail: Option<(&str, &str)>,
    ) -> Integrity {
        Integrity {
            json_matches: content_hash(report_json.as_bytes()) == content_hash_stored,
            html_matches: content_hash(report_html.as_bytes()) == html_hash_stored,
            trail_matches: trail.map(|(c, h)| c == content_hash_stored && h == html_hash_stored),
        }
    }

    /// The stored HTML is what was signed: safe to serve as the server rendered it.
    pub fn html_trusted(&self) -> bool {
        self.html_matches && self.trail_matches == Some(true)
    }

    /// Everything stored is as signed.
    pub fn intact(&self) -> bool {
        self.json_matches && self.html_matches && self.trail_matches != Some(false)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statements_are_trimmed_and_bounded() {
        assert_eq!(
            Statement::parse("  Reviewed, fine.  ").unwrap().as_str(),
            "Reviewed, fine."
        );
        assert_eq!(
            Statement::parse("   short   "),
            Err(StatementError::TooShort(5))
        );
        // Characters, not bytes: ten accented letters are enough.
        assert!(Statement::parse("éééééééééé").is_ok());
        assert_eq!(
            Statement::parse(&"x".repeat(2001)),
            Err(StatementError::TooLong(2001))
        );
        assert!(Statement::parse(&"x".repeat(2000)).is_ok());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [ {"z": 1, "a": null} , 2.5, "x\"y" ], "a": {"d": true, "c": -0.001},
                 "é": 1, "Z": 2 }"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"Z":2,"a":{"c":-0.001,"d":true},"b":[{"a":null,"z":1},2.5,"x\"y"],"é":1}"#
        );
        // The same content in another order gives the same text.
        let w = json!({"Z": 2, "é": 1, "a": {"d": true, "c": -0.001}, "b": [{"a": null, "z": 1}, 2.5, "x\"y"]});
        assert_eq!(canonical_json(&v), canonical_json(&w));
        // Canonical text read back is canonical already.
        let again: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
        assert_eq!(canonical_json(&again), canonical_json(&v));
    }

    /// The text as it was made before keys and scalars were written straight into the buffer
    /// (`to_string()` of each): sign-offs stored then are checked against today's text.
    fn canonical_as_before(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push('{');
                for (i, (key, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical_as_before(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical_as_before(v, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }

    #[test]
    fn canonical_json_keeps_the_bytes_of_earlier_sign_offs() {
        let v = json!({
            "tab\tquote\"slash\\": ["\u{1}\u{1f}\u{7f}", "é€😀", "</script>", ""],
            "n": [0, -0.0, 1e-7, 0.1, 1e300, -12345678901234567i64, u64::MAX, 0.30000000000000004],
            "nested": {"b": [true, false, null], "a": {"": 1}},
        });
        let mut before = String::new();
        canonical_as_before(&v, &mut before);
        assert_eq!(canonical_json(&v), before);
        assert!(before.contains(r#""tab\tquote\"slash\\""#), "{before}");
    }

    #[test]
    fn content_hash_is_sha256_hex_of_the_bytes() {
        // Reference values from `printf '%s' ... | sha256sum`.
        assert_eq!(
            content_hash(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            content_hash(br#"{"a":1}"#),
            "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn changed_fields_names_the_top_level_differences() {
        let a = json!({"run_status": "audited", "verdict": "pass", "overrides": []});
        let b = json!({"run_status": "published", "verdict": "pass", "extra": 1, "overrides": []});
        assert_eq!(changed_fields(&a, &b), vec!["extra", "run_status"]);
        assert!(changed_fields(&a, &a).is_empty());
    }

    #[test]
    fn integrity_recomputes_both_hashes_and_compares_the_trail() {
        let json = r#"{"a":1}"#;
        let html = "<p>report</p>";
        let (jh, hh) = (content_hash(json.as_bytes()), content_hash(html.as_bytes()));
        let ok = Integrity::check(json, &jh, html, &hh, Some((&jh, &hh)));
        assert!(ok.intact() && ok.html_trusted());
        let tampered = Integrity::check(r#"{"a":2}"#, &jh, html, &hh, Some((&jh, &hh)));
        assert!(!tampered.json_matches && !tampered.intact());
        // Both the report and its stored hash rewritten: the trail still knows.
        let forged = content_hash(br#"{"a":2}"#);
        let rewritten = Integrity::check(r#"{"a":2}"#, &forged, html, &hh, Some((&jh, &hh)));
        assert!(rewritten.json_matches && rewritten.trail_matches == Some(false));
        assert!(!rewritten.intact());
        let html_changed = Integrity::check(json, &jh, "<p>other</p>", &hh, None);
        assert!(!html_changed.intact() && !html_changed.html_trusted());
    }
}
