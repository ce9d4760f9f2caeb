//! Throttling of failed sign-ins, per e-mail address and per client address. Counting by the
//! address typed (not by account) treats unknown e-mails like known ones, so the lock-out
//! reveals nothing about which accounts exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before a lock-out starts.
pub const FREE_ATTEMPTS: u32 = 5;
/// A client address may fail this many times (across e-mails) before it is locked out.
pub const FREE_ATTEMPTS_PER_CLIENT: u32 = 20;
const BASE_LOCKOUT: Duration = Duration::from_secs(60);
const MAX_LOCKOUT: Duration = Duration::from_secs(60 * 60);
/// Failures older than this are forgotten.
const WINDOW: Duration = Duration::from_secs(60 * 60);

#[derive(Default)]
struct Record {
    failures: u32,
    last_failure: Option<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Throttle {
    records: Mutex<HashMap<String, Record>>,
}

impl Throttle {
    fn keys(email: &str, client: &str) -> [(String, u32); 2] {
        [
            (
                format!("email:{}", email.trim().to_lowercase()),
                FREE_ATTEMPTS,
            ),
            (format!("client:{client}"), FREE_ATTEMPTS_PER_CLIENT),
        ]
    }

    /// How long the caller must still wait, if locked out.
    pub fn check(&self, email: &str, client: &str, now: Instant) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        Self::keys(email, client)
            .iter()
            .filter_map(|(k, _)| records.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    pub fn record_failure(&self, email: &str, client: &str, now: Instant) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() > 100_000 {
            records.retain(|_, r| r.last_failure.is_some_and(|t| now - t < WINDOW));
        }
        for (key, free) in Self::keys(email, client) {
            let record = records.entry(key).or_default();
            if record.last_failure.is_some_and(|t| now - t > WINDOW) {
                *record = Record::default();
            }
            record.failures += 1;
            record.last_failure = Some(now);
            if record.failures >= free {
                // Doubling lock-out: 1, 2, 4 … minutes, at most an hour.
                let exponent = (record.failures - free).min(6);
                let lockout = (BASE_LOCKOUT * 2u32.pow(exponent)).min(MAX_LOCKOUT);
                record.locked_until = Some(now + lockout);
            }
        }
    }

    pub fn record_success(&self, email: &str) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(&format!("email:{}", email.trim().to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_repeated_failures_and_lengthens() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..FREE_ATTEMPTS - 1 {
            t.record_failure("a@x.com", "1.1.1.1", now);
        }
        assert_eq!(t.check("A@x.com", "1.1.1.1", now), None);
        t.record_failure("a@x.com", "1.1.1.1", now);
        assert_eq!(t.check("a@x.com", "2.2.2.2", now), Some(BASE_LOCKOUT));
        t.record_failure("a@x.com", "1.1.1.1", now);
        assert_eq!(t.check("a@x.com", "1.1.1.1", now), Some(BASE_LOCKOUT * 2));
        assert_eq!(t.check("a@x.com", "1.1.1.1", now + BASE_LOCKOUT * 3), None);
        assert_eq!(t.check("b@x.com", "3.3.3.3", now), None);
    }

    #[test]
    fn one_client_trying_many_emails_is_locked_out() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..FREE_ATTEMPTS_PER_CLIENT {
            t.record_failure(&format!("u{i}@x.com"), "9.9.9.9", now);
        }
        assert!(t.check("new@x.com", "9.9.9.9", now).is_some());
        assert!(t.check("new@x.com", "8.8.8.8", now).is_none());
    }

    #[test]
    fn success_clears_the_email_record() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..3 {
            t.record_failure("a@x.com", "1.1.1.1", now);
        }
        t.record_success("a@x.com");
        for _ in 0..FREE_ATTEMPTS - 1 {
            t.record_failure("a@x.com", "1.1.1.1", now);
        }
        assert_eq!(t.check("a@x.com", "5.5.5.5", now), None);
    }
}
