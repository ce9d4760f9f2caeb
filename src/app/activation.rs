//! How many members of each segment of a run an activation export would hold, per channel:
//! counts only (no individual is read), so the links can say "Email: 498 of 844 reachable"
//! before anyone downloads a list.

use std::collections::BTreeMap;

use super::runs::RunError;
use crate::db::{self, Db};
use crate::policy::Policy;

/// Per channel (policy order), per segment: (members now, of them reachable on the channel).
pub type Reach = BTreeMap<String, Vec<(u64, u64)>>;

/// Members of each segment of `run_id` whose segmentation consent is active now, and how many
/// of them are reachable on each of the policy's channels now (from the consent state, which
/// gives the ledger's answer without reading the ledger). Counted once per consent-state
/// version and policy version, and kept (`run_reach`) until the state changes or the next
/// grant of one of those purposes lapses, as the live sizes are.
pub fn reach(db: &Db, policy: &Policy, run_id: i64, n_segments: usize) -> Result<Reach, RunError> {
    let now = db::now();
    Ok(db.read(|conn| {
        let version = db::consent_state::version(conn)?;
        if let Some(json) =
            db::segmentation::cached_reach(conn, run_id, version, &policy.version, now)?
            && let Ok(reach) = serde_json::from_str::<Reach>(&json)
            && reach.values().all(|counts| counts.len() == n_segments)
        {
            return Ok(reach);
        }
        let reach = count_reach(conn, policy, run_id, n_segments, now)?;
        let valid_until =
            changes_after(conn, policy, now)?.unwrap_or(now + chrono::TimeDelta::days(366));
        let json = serde_json::to_string(&reach).expect("reach serialises");
        db::segmentation::cache_reach(conn, run_id, version, &policy.version, valid_until, &json)?;
        Ok(reach)
    })?)
}

/// The next instant after `now` at which a run's live members or reach could change by time
/// alone: a grant of the segmentation purpose or of a channel's purpose lapses, or a
/// future-dated consent event takes effect (`None`: none is due).
pub fn changes_after(
    conn: &mut db::DbConnection,
    policy: &Policy,
    now: chrono::NaiveDateTime,
) -> db::DbResult<Option<chrono::NaiveDateTime>> {
    let seg = &policy.segmentation;
    let mut first = None;
    for purpose in std::iter::once(&seg.purpose).chain(seg.channels.values()) {
        let at = db::consent_state::changes_after(conn, purpose, &policy.purposes[purpose], now)?;
        first = first.into_iter().chain(at).min();
    }
    Ok(first)
}

fn count_reach(
    conn: &mut db::DbConnection,
    policy: &Policy,
    run_id: i64,
    n_segments: usize,
    now: chrono::NaiveDateTime,
) -> db::DbResult<Reach> {
    let seg = &policy.segmentation;
    let members = super::runs::live_memberships(conn, policy, run_id, now)?;
    let sizes = super::runs::count_by_segment(&members, n_segments);
    let mut out = Reach::new();
    for (channel, purpose) in &seg.channels {
        let reachable = db::consent_state::active_under(conn, policy, purpose, now)?;
        let counts = super::runs::count_by_segment(
            members
                .iter()
                .filter(|(id, _)| reachable.binary_search(id).is_ok()),
            n_segments,
        );
        out.insert(channel.clone(), sizes.iter().copied().zip(counts).collect());
    }
    Ok(out)
}

/// The names of a run's segments, by number.
pub fn segment_names(db: &Db, run_id: i64) -> Result<BTreeMap<i32, String>, RunError> {
    Ok(db.read(|conn| {
        Ok(db::segmentation::segments(conn, run_id)?
            .into_iter()
            .map(|s| (s.segment, s.name))
            .collect())
    })?)
}
