//! Throttling of failed sign-ins, per e-mail address and per client address: the decisions.
//! The counters are kept in the database (`db::throttle`), shared by every server on it, so a
//! guesser gains nothing by spreading attempts over servers. Counting by the address typed
//! (not by account) treats unknown e-mails like known ones, so the lock-out reveals nothing
//! about which accounts exist.

use std::net::IpAddr;
use std::time::Duration;

use chrono::NaiveDateTime;

/// Failures allowed before a lock-out starts.
pub const FREE_ATTEMPTS: u32 = 5;
/// A client address may fail this many times (across e-mails) before it is locked out.
pub const FREE_ATTEMPTS_PER_CLIENT: u32 = 20;
const BASE_LOCKOUT: Duration = Duration::from_secs(60);
const MAX_LOCKOUT: Duration = Duration::from_secs(60 * 60);
/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(60 * 60);

/// The failures counted against one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub failures: u32,
    pub last_failure: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
}

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("short durations")
}

/// The subject a sign-in's e-mail is counted under.
pub fn email_subject(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

/// What a failure counts against, each with its free attempts: the e-mail typed and the
/// client address.
pub fn subjects(email: &str, client: &str) -> [(String, u32); 2] {
    [
        (email_subject(email), FREE_ATTEMPTS),
        (format!("client:{client}"), FREE_ATTEMPTS_PER_CLIENT),
    ]
}

/// The record after one more failure at `now`.
pub fn after_failure(previous: Option<&Record>, free: u32, now: NaiveDateTime) -> Record {
    let failures = match previous {
        Some(r) if now - r.last_failure <= span(WINDOW) => r.failures + 1,
        _ => 1,
    };
    let locked_until = match previous {
        Some(r) if failures > 1 => r.locked_until,
        _ => None,
    };
    let locked_until = if failures >= free {
        // Doubling lock-out: 1, 2, 4 … minutes, at most an hour.
        let exponent = (failures - free).min(6);
        Some(now + span((BASE_LOCKOUT * 2u32.pow(exponent)).min(MAX_LOCKOUT)))
    } else {
        locked_until
    };
    Record {
        failures,
        last_failure: now,
        locked_until,
    }
}

/// How long the caller must still wait, if any of `records` locks it out.
pub fn wait<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    now: NaiveDateTime,
) -> Option<Duration> {
    records
        .into_iter()
        .filter_map(|r| r.locked_until)
        .filter(|until| *until > now)
        .map(|until| (until - now).to_std().unwrap_or_default())
        .max()
}

/// The client a request comes from. Only when the TCP peer is one of the `trusted` proxies is
/// `X-Forwarded-For` believed, and then its right-most address outside them (the one the
/// nearest trusted proxy saw; anything left of it the client may have written itself).
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> String {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer else {
        return "unknown".into();
    };
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .rev()
        .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn locks_out_after_repeated_failures_and_lengthens() {
        let mut record = None;
        for _ in 0..FREE_ATTEMPTS - 1 {
            record = Some(after_failure(record.as_ref(), FREE_ATTEMPTS, at(0)));
        }
        assert_eq!(wait(record.as_ref(), at(0)), None);
        record = Some(after_failure(record.as_ref(), FREE_ATTEMPTS, at(0)));
        assert_eq!(wait(record.as_ref(), at(0)), Some(BASE_LOCKOUT));
        record = Some(after_failure(record.as_ref(), FREE_ATTEMPTS, at(0)));
        assert_eq!(wait(record.as_ref(), at(0)), Some(BASE_LOCKOUT * 2));
        assert_eq!(wait(record.as_ref(), at(180)), None);
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut record = None;
        for _ in 0..FREE_ATTEMPTS - 1 {
            record = Some(after_failure(record.as_ref(), FREE_ATTEMPTS, at(0)));
        }
        let later = after_failure(record.as_ref(), FREE_ATTEMPTS, at(3601));
        assert_eq!(later.failures, 1);
        assert_eq!(later.locked_until, None);
    }

    #[test]
    fn subjects_ignore_case_and_count_the_client() {
        let [(email, free), (client, per_client)] = subjects(" A@x.com", "9.9.9.9");
        assert_eq!((email.as_str(), free), ("email:a@x.com", FREE_ATTEMPTS));
        assert_eq!(
            (client.as_str(), per_client),
            ("client:9.9.9.9", FREE_ATTEMPTS_PER_CLIENT)
        );
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // A direct client cannot choose its address.
        assert_eq!(
            client_address(peer("203.0.113.9"), Some("1.2.3.4"), &proxies),
            "203.0.113.9"
        );
        assert_eq!(
            client_address(peer("10.0.0.2"), Some("1.2.3.4"), &[]),
            "10.0.0.2"
        );
        // Behind the proxies: the right-most address outside them, whatever the client
        // prepended.
        assert_eq!(
            client_address(
                peer("10.0.0.2"),
                Some("6.6.6.6, 203.0.113.9, 10.0.0.7"),
                &proxies
            ),
            "203.0.113.9"
        );
        // No usable header: the proxy itself.
        assert_eq!(
            client_address(peer("10.0.0.2"), Some("garbage"), &proxies),
            "10.0.0.2"
        );
        assert_eq!(client_address(None, None, &proxies), "unknown");
    }
}
