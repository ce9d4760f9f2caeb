//! Reading who is in a segment: individual-level data, so every read is in the trail, and
//! nobody appears who has withdrawn consent since the run (or, for an activation export, who
//! has no active consent for the channel).

use super::pipeline::{RunError, live_members};
use crate::consent::objections::DisclosureKind;
use crate::db::segmentation::{self as store, PUBLISHED};
use crate::db::{self, Db, disclosures};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

/// The members of a run (optionally one segment) as (external id, segment). With a channel,
/// this is an activation export: only a published run, only members reachable on the channel
/// now. The read is in the trail in the same transaction.
pub fn read_members(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<&str>,
) -> Result<Vec<(String, i32)>, RunError> {
    db.write(|conn| {
        let Some(run) = store::run(conn, run_id)? else {
            return Ok(Err(RunError::NotFound(run_id)));
        };
        if channel.is_some() && run.status != PUBLISHED {
            return Ok(Err(RunError::WrongState {
                id: run_id,
                status: run.status,
                message: "only a published segmentation can be exported for activation",
            }));
        }
        let members = match live_members(conn, policy, run_id, segment, channel) {
            Ok(m) => m,
            Err(RunError::Db(e)) => return Err(e),
            Err(other) => return Ok(Err(other)),
        };
        // Who was disclosed, for the objection check (`fairseg check objections`).
        let mut purposes = vec![policy.segmentation.purpose.clone()];
        if let Some(p) = channel.and_then(|c| policy.segmentation.channels.get(c)) {
            purposes.push(p.clone());
        }
        let ids: Vec<i64> = members.iter().map(|m| m.0).collect();
        let disclosure_id = disclosures::insert(
            conn,
            &disclosures::NewDisclosure {
                kind: if channel.is_some() {
                    DisclosureKind::ActivationExport
                } else {
                    DisclosureKind::MemberList
                },
                run_id,
                segment,
                channel,
                purposes: &purposes,
                at: db::now(),
                by: actor.as_str(),
                customers: &ids,
            },
        )?;
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                if channel.is_some() {
                    "members.exported"
                } else {
                    "members.viewed"
                },
                format!("run:{run_id}"),
                serde_json::json!({
                    "segment": segment,
                    "channel": channel,
                    "members": members.len(),
                    "disclosure_id": disclosure_id,
                }),
            ),
            &policy.version,
        )?;
        Ok(Ok(members
            .into_iter()
            .map(|(_, external, segment)| (external, segment))
            .collect()))
    })?
}
