//! The consent ledger's rules: what an event is, in which order events may be appended, and
//! the state a customer's consent for a purpose is in at any instant. Storage and HTTP live
//! elsewhere (db::consent, web::consent); this is the part a compliance officer must be able
//! to read and trust.

pub mod coverage;
pub mod link;
pub mod objections;

use chrono::{NaiveDateTime, TimeDelta};
use serde::Serialize;

use crate::policy::{LegalBasis, Policy, PurposeSpec};
use crate::time::format_instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
}

impl ConsentStatus {
    pub fn parse(raw: &str) -> Result<ConsentStatus, String> {
        match raw.trim() {
            "granted" => Ok(ConsentStatus::Granted),
            "withdrawn" => Ok(ConsentStatus::Withdrawn),
            other => Err(format!(
                "unknown consent status `{other}`: use `granted` or `withdrawn`"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
}

/// One ledger event, as far as the state depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub status: ConsentStatus,
    pub recorded_at: NaiveDateTime,
}

/// A customer's consent for one purpose at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConsentState {
    /// The latest event is a grant that has not lapsed.
    Granted {
        since: NaiveDateTime,
        expires_at: NaiveDateTime,
    },
    /// The latest event is a withdrawal (or, for legitimate interest, an objection).
    Withdrawn { since: NaiveDateTime },
    /// The latest event is a grant older than the purpose's validity period.
    Expired {
        granted_at: NaiveDateTime,
        expired_at: NaiveDateTime,
    },
    /// No event at or before the instant.
    NeverAsked,
}

impl ConsentState {
    pub fn name(&self) -> &'static str {
        match self {
            ConsentState::Granted { .. } => "granted",
            ConsentState::Withdrawn { .. } => "withdrawn",
            ConsentState::Expired { .. } => "expired",
            ConsentState::NeverAsked => "never_asked",
        }
    }

    /// Whether the customer's data may be used for a purpose with this legal basis: under
    /// consent only while a grant is active; under legitimate interest unless they objected.
    pub fn permits(&self, basis: LegalBasis) -> bool {
        match basis {
            LegalBasis::Consent => matches!(self, ConsentState::Granted { .. }),
            LegalBasis::LegitimateInterest => !matches!(self, ConsentState::Withdrawn { .. }),
        }
    }
}

pub fn validity(purpose: &PurposeSpec) -> TimeDelta {
    TimeDelta::days(i64::from(purpose.consent_validity_days))
}

/// The state at `at` from one customer × purpose's events in ledger order (oldest first).
/// The latest event at or before `at` wins; among events at the same instant, the one entered
/// last wins. A grant lapses `validity` after it was recorded.
pub fn state_at(events: &[Event], at: NaiveDateTime, validity: TimeDelta) -> ConsentState {
    let latest = events.iter().rev().find(|e| e.recorded_at <= at);
    match latest {
        None => ConsentState::NeverAsked,
        Some(e) => state_of_latest(e, at, validity),
    }
}

/// The state at `at` given the latest event at or before it.
pub fn state_of_latest(latest: &Event, at: NaiveDateTime, validity: TimeDelta) -> ConsentState {
    match latest.status {
        ConsentStatus::Withdrawn => ConsentState::Withdrawn {
            since: latest.recorded_at,
        },
        ConsentStatus::Granted => {
            let expires_at = latest.recorded_at + validity;
            if at >= expires_at {
                ConsentState::Expired {
                    granted_at: latest.recorded_at,
                    expired_at: expires_at,
                }
            } else {
                ConsentState::Granted {
                    since: latest.recorded_at,
                    expires_at,
                }
            }
        }
    }
}

/// Events are appended in time order per customer × purpose: an event recorded before the
/// latest one already in the ledger would rewrite history (a withdrawal dated before the
/// grant it answers, say), so it is refused.
pub fn check_order(latest: Option<NaiveDateTime>, new: NaiveDateTime) -> Result<(), String> {
    match latest {
        Some(latest) if new < latest => Err(format!(
            "recorded at {}, before the latest event for this customer and purpose ({}); \
             the ledger only takes events in time order",
            format_instant(new),
            format_instant(latest)
        )),
        _ => Ok(()),
    }
}

/// How far ahead of the server's clock an event may be dated (clock skew between systems).
pub const FUTURE_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// An event dated in the future is refused: it would count as the latest event until then and
/// make every real event recorded meanwhile look out of order.
pub fn check_not_future(new: NaiveDateTime, now: NaiveDateTime) -> Result<(), String> {
    if new > now + FUTURE_TOLERANCE {
        Err(format!(
            "{} is in the future (the server's time is {})",
            format_instant(new),
            format_instant(now)
        ))
    } else {
        Ok(())
    }
}

/// The purpose of that name, or an error listing the policy's purposes.
pub fn purpose<'p>(policy: &'p Policy, name: &str) -> Result<&'p PurposeSpec, String> {
    policy.purposes.get(name.trim()).ok_or_else(|| {
        format!(
            "unknown purpose `{}`: the policy has {}",
            name.trim(),
            policy
                .purposes
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        crate::time::parse_instant(s).unwrap()
    }
    fn ev(status: ConsentStatus, at: &str) -> Event {
        Event {
            status,
            recorded_at: t(at),
        }
    }
    const YEAR: TimeDelta = TimeDelta::days(365);
    use ConsentStatus::{Granted, Withdrawn};

    #[test]
    fn the_latest_event_at_or_before_the_instant_wins() {
        let events = [ev(Granted, "2025-01-01"), ev(Withdrawn, "2025-03-01")];
        assert_eq!(
            state_at(&events, t("2024-12-31"), YEAR),
            ConsentState::NeverAsked
        );
        assert_eq!(
            state_at(&events, t("2025-01-01"), YEAR),
            ConsentState::Granted {
                since: t("2025-01-01"),
                expires_at: t("2026-01-01")
            }
        );
        assert_eq!(
            state_at(&events, t("2025-03-01"), YEAR),
            ConsentState::Withdrawn {
                since: t("2025-03-01")
            },
            "withdrawal takes effect at its instant"
        );
    }

    #[test]
    fn a_grant_lapses_after_the_validity_period_and_a_renewal_restores_it() {
        let events = [ev(Granted, "2024-01-01"), ev(Granted, "2025-06-01")];
        let lapsed = state_at(&events[..1], t("2025-01-01"), YEAR);
        assert_eq!(
            lapsed,
            ConsentState::Expired {
                granted_at: t("2024-01-01"),
                expired_at: t("2024-12-31")
            }
        );
        assert!(!lapsed.permits(LegalBasis::Consent));
        assert!(state_at(&events, t("2025-07-01"), YEAR).permits(LegalBasis::Consent));
    }

    #[test]
    fn legitimate_interest_allows_processing_until_an_objection() {
        assert!(ConsentState::NeverAsked.permits(LegalBasis::LegitimateInterest));
        assert!(!ConsentState::NeverAsked.permits(LegalBasis::Consent));
        let objected = ConsentState::Withdrawn {
            since: t("2025-01-01"),
        };
        assert!(!objected.permits(LegalBasis::LegitimateInterest));
    }

    #[test]
    fn events_at_the_same_instant_resolve_to_the_one_entered_last() {
        let events = [ev(Granted, "2025-01-01"), ev(Withdrawn, "2025-01-01")];
        assert_eq!(state_at(&events, t("2025-01-02"), YEAR).name(), "withdrawn");
    }

    #[test]
    fn out_of_order_events_are_refused_with_both_times() {
        let err = check_order(Some(t("2025-03-01")), t("2025-02-01")).unwrap_err();
        assert!(
            err.contains("2025-02-01T00:00:00Z") && err.contains("2025-03-01T00:00:00Z"),
            "{err}"
        );
        assert!(check_order(Some(t("2025-03-01")), t("2025-03-01")).is_ok());
        assert!(check_order(None, t("2025-03-01")).is_ok());
    }

    #[test]
    fn events_dated_in_the_future_are_refused() {
        let now = t("2025-03-01T12:00:00Z");
        assert!(check_not_future(t("2025-03-01T12:04:00Z"), now).is_ok());
        let err = check_not_future(t("2025-03-02"), now).unwrap_err();
        assert!(err.contains("future"), "{err}");
    }
}
