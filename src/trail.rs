//! The tamper-evident trail: every state change and every view of individual-level data is
//! appended as an entry whose hash covers the previous entry's hash and all of its own fields.
//! Altering, inserting or removing any row breaks the chain at that row; removing the newest
//! rows is caught by the separately stored head.

use chrono::NaiveDateTime;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash that precedes the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Trail actions that change no customer's data (who is on file, their attributes and
/// protected attributes, transactions and consent) and not which run is published: views,
/// sign-ins, staff accounts, audits, KPI evaluations and the life of a run up to its
/// publication. Caches of figures computed from customer data stay current across entries of
/// these; every other action, including any added later, counts as a change, so a new kind
/// of change can cost a recomputation but never leave a stale figure shown.
pub const CUSTOMER_DATA_UNCHANGED_BY: &[&str] = &[
    "auth.signed_in",
    "auth.signed_out",
    "audit.completed",
    "audit.overridden",
    "audit.signed",
    "consent.link_issued",
    "consent.viewed",
    "customer.viewed",
    "dsr.exported",
    "kpi.evaluated",
    "members.exported",
    "members.viewed",
    "objections.checked",
    "segment.renamed",
    "segment.strategy_recorded",
    "segmentation.claimed",
    "segmentation.completed",
    "segmentation.failed",
    "segmentation.released",
    "segmentation.requested",
    "segmentation.rerun",
    "server.signing_key_generated",
    "user.created",
    "user.disabled",
    "user.enabled",
    "user.password_changed",
    "user.password_reset",
    "user.role_changed",
];

/// Who did something: a signed-in user (by email), the CLI, or the server itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn user(email: &str) -> Actor {
        Actor(email.to_string())
    }
    pub fn cli() -> Actor {
        // Service accounts and containers often have no USER; LOGNAME, then the numeric uid,
        // still tell an auditor which account ran the command.
        let who = ["USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/proc/self/status")
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("Uid:"))
                            .and_then(|l| {
                                l.split_whitespace().next().map(|uid| format!("uid{uid}"))
                            })
                    })
            })
            .unwrap_or_else(|| "unknown".into());
        Actor(format!("cli:{who}"))
    }
    pub fn system() -> Actor {
        Actor("system".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is about to be appended.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub actor: Actor,
    /// Dotted verb, e.g. `user.created`, `members.viewed`.
    pub action: &'static str,
    /// What it was done to: a user id, a run id, a customer pseudonym.
    pub subject: String,
    /// Details as a JSON object; never raw customer identifiers.
    pub detail: serde_json::Value,
}

impl NewEntry {
    pub fn new(
        actor: &Actor,
        action: &'static str,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> NewEntry {
        NewEntry {
            actor: actor.clone(),
            action,
            subject: subject.into(),
            detail,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub policy_version: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry's content chained to `prev_hash`. Each field is length-prefixed so
/// that moving text from one field to the next changes the hash.
#[expect(clippy::too_many_arguments, reason = "the hash covers every field")]
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    occurred_at: NaiveDateTime,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    policy_version: &str,
) -> String {
    let mut hasher = Sha256::new();
    let timestamp = occurred_at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let seq = seq.to_string();
    for field in [
        prev_hash,
        &seq,
        &timestamp,
        actor,
        action,
        subject,
        detail,
        policy_version,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

impl Entry {
    fn expected_hash(&self) -> String {
        entry_hash(
            &self.prev_hash,
            self.seq,
            self.occurred_at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.detail,
            &self.policy_version,
        )
    }
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The first entry that does not verify (or the missing position).
    pub seq: i64,
    pub problem: String,
}

/// Checks entries in `seq` order as they stream from storage.
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    checked: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            checked: 0,
        }
    }
}

impl Verifier {
    pub fn check(&mut self, entry: &Entry) -> Result<(), Break> {
        if entry.seq != self.expected_seq {
            return Err(Break {
                seq: self.expected_seq,
                problem: format!(
                    "entry {} is missing (the next stored entry is {})",
                    self.expected_seq, entry.seq
                ),
            });
        }
        if entry.prev_hash != self.prev_hash {
            return Err(Break {
                seq: entry.seq,
                problem: "its link to the previous entry does not match (an entry before it was removed or replaced)".into(),
            });
        }
        if entry.expected_hash() != entry.hash {
            return Err(Break {
                seq: entry.seq,
                problem: "its content does not match its hash (the entry was altered)".into(),
            });
        }
        self.expected_seq += 1;
        self.prev_hash = entry.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// Compares the end of the chain with the stored head.
    pub fn finish(self, head_seq: i64, head_hash: &str) -> Result<u64, Break> {
        let last = self.expected_seq - 1;
        if last != head_seq || self.prev_hash != head_hash {
            return Err(Break {
                seq: last + 1,
                problem: format!(
                    "the chain ends at entry {last} but the head records entry {head_seq}: entries after {last} were removed"
                ),
            });
        }
        Ok(self.checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS_HASH.to_string();
        let at = NaiveDateTime::parse_from_str("2026-11-23 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        (1..=n)
            .map(|seq| {
                let mut e = Entry {
                    seq,
                    occurred_at: at,
                    actor: "a@x".into(),
                    action: "user.created".into(),
                    subject: format!("s{seq}"),
                    detail: "{}".into(),
                    policy_version: "sha256:p".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.expected_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(entries: &[Entry], head: (i64, &str)) -> Result<u64, Break> {
        let mut v = Verifier::default();
        for e in entries {
            v.check(e)?;
        }
        v.finish(head.0, head.1)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c, (5, &c[4].hash)), Ok(5));
        assert_eq!(verify(&[], (0, GENESIS_HASH)), Ok(0));
    }

    #[test]
    fn an_altered_entry_is_named() {
        let mut c = chain(5);
        c[2].detail = r#"{"role":"admin"}"#.into();
        let head = c[4].hash.clone();
        assert_eq!(verify(&c, (5, &head)).unwrap_err().seq, 3);
    }

    #[test]
    fn a_removed_entry_is_named() {
        let mut c = chain(5);
        let head = c[4].hash.clone();
        c.remove(1);
        assert_eq!(verify(&c, (5, &head)).unwrap_err().seq, 2);
    }

    #[test]
    fn removing_the_newest_entries_is_caught_by_the_head() {
        let c = chain(5);
        assert_eq!(verify(&c[..3], (5, &c[4].hash)).unwrap_err().seq, 4);
    }

    #[test]
    fn fields_are_delimited() {
        let at = NaiveDateTime::default();
        assert_ne!(
            entry_hash("p", 1, at, "ab", "c", "", "", ""),
            entry_hash("p", 1, at, "a", "bc", "", "", "")
        );
    }
}
