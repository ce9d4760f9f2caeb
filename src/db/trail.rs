//! Storage of the trail and of policy versions.

use diesel::prelude::*;

use super::schema::{policy_versions, trail, trail_head};
use super::{DbConnection, DbResult};
use crate::policy::Policy;
use crate::trail::{Break, Entry, NewEntry, Verifier, entry_hash};

#[derive(Queryable, Selectable)]
#[diesel(table_name = trail)]
struct TrailRow {
    seq: i64,
    occurred_at: chrono::NaiveDateTime,
    actor: String,
    action: String,
    subject: String,
    detail: String,
    policy_version: String,
    prev_hash: String,
    hash: String,
}

impl From<TrailRow> for Entry {
    fn from(r: TrailRow) -> Entry {
        Entry {
            seq: r.seq,
            occurred_at: r.occurred_at,
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            detail: r.detail,
            policy_version: r.policy_version,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// The sequence number of the latest entry: it changes with every use case that changes
/// data, since each appends to the trail in its transaction.
pub fn head_seq(conn: &mut DbConnection) -> DbResult<i64> {
    Ok(trail_head::table
        .filter(trail_head::id.eq(1))
        .select(trail_head::seq)
        .first(conn)?)
}

/// The sequence number of the latest entry whose action is not one of `except` (0 when there
/// is none): read from the newest entry back, so it costs the entries made since.
pub fn last_seq_except(conn: &mut DbConnection, except: &[&str]) -> DbResult<i64> {
    Ok(trail::table
        .filter(trail::action.ne_all(except))
        .order(trail::seq.desc())
        .select(trail::seq)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Whether an entry after `after` has an action other than those in `except`: read from the
/// entries made since, by their key (the first by seq, so the key is walked from `after`
/// whatever the planner expects of the other condition; see
/// `db::consent::any_event_since_effective_by`).
pub fn any_since_except(conn: &mut DbConnection, after: i64, except: &[&str]) -> DbResult<bool> {
    Ok(trail::table
        .filter(trail::seq.gt(after))
        .filter(trail::action.ne_all(except))
        .order(trail::seq.asc())
        .select(trail::seq)
        .first::<i64>(conn)
        .optional()?
        .is_some())
}

/// Appends an entry. Call it inside the transaction that makes the change it records
/// (`Db::write`), so the change and its record commit together or not at all.
pub fn append(conn: &mut DbConnection, entry: NewEntry, policy_version: &str) -> DbResult<i64> {
    let (head_seq, head_hash): (i64, String) = trail_head::table
        .filter(trail_head::id.eq(1))
        .select((trail_head::seq, trail_head::hash))
        .first(conn)?;
    let seq = head_seq + 1;
    let occurred_at = super::now();
    let detail = entry.detail.to_string();
    let hash = entry_hash(
        &head_hash,
        seq,
        occurred_at,
        entry.actor.as_str(),
        entry.action,
        &entry.subject,
        &detail,
        policy_version,
    );
    diesel::insert_into(trail::table)
        .values((
            trail::seq.eq(seq),
            trail::occurred_at.eq(occurred_at),
            trail::actor.eq(entry.actor.as_str()),
            trail::action.eq(entry.action),
            trail::subject.eq(&entry.subject),
            trail::detail.eq(&detail),
            trail::policy_version.eq(policy_version),
            trail::prev_hash.eq(&head_hash),
            trail::hash.eq(&hash),
        ))
        .execute(conn)?;
    diesel::update(trail_head::table.filter(trail_head::id.eq(1)))
        .set((trail_head::seq.eq(seq), trail_head::hash.eq(&hash)))
        .execute(conn)?;
    Ok(seq)
}

/// Filters for reading the trail.
#[derive(Debug, Default, Clone)]
pub struct TrailFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject: Option<String>,
    pub from: Option<chrono::NaiveDateTime>,
    pub to: Option<chrono::NaiveDateTime>,
}

/// A LIKE pattern matching values that start with `prefix` taken literally: action names
/// contain `_`, which LIKE would otherwise read as a wildcard.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of entries, newest first, and the total that match.
pub fn page(
    conn: &mut DbConnection,
    filter: &TrailFilter,
    offset: i64,
    limit: i64,
) -> DbResult<(Vec<Entry>, i64)> {
    let build = || {
        let mut q = trail::table.into_boxed();
        if let Some(actor) = &filter.actor {
            q = q.filter(trail::actor.eq(actor.clone()));
        }
        if let Some(action) = &filter.action {
            q = q.filter(trail::action.like(prefix_pattern(action)).escape('\\'));
        }
        if let Some(subject) = &filter.subject {
            q = q.filter(trail::subject.eq(subject.clone()));
        }
        if let Some(from) = filter.from {
            q = q.filter(trail::occurred_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(trail::occurred_at.lt(to));
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows: Vec<TrailRow> = build()
        .order(trail::seq.desc())
        .offset(offset)
        .limit(limit)
        .select(TrailRow::as_select())
        .load(conn)?;
    Ok((rows.into_iter().map(Entry::from).collect(), total))
}

/// The outcome of verifying the whole chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub entries: u64,
    pub head_seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<Break>,
}

/// Walks the chain in order, in batches, and reports the first bad entry.
pub fn verify(conn: &mut DbConnection) -> DbResult<Verification> {
    const BATCH: i64 = 5_000;
    let (head_seq, head_hash): (i64, String) = trail_head::table
        .filter(trail_head::id.eq(1))
        .select((trail_head::seq, trail_head::hash))
        .first(conn)?;
    let mut verifier = Verifier::default();
    let mut after = 0i64;
    let mut checked = 0u64;
    loop {
        let rows: Vec<TrailRow> = trail::table
            .filter(trail::seq.gt(after))
            .order(trail::seq.asc())
            .limit(BATCH)
            .select(TrailRow::as_select())
            .load(conn)?;
        let n = rows.len();
        for row in rows {
            after = row.seq;
            let entry = Entry::from(row);
            if let Err(first_bad) = verifier.check(&entry) {
                return Ok(Verification {
                    entries: checked,
                    head_seq,
                    first_bad: Some(first_bad),
                });
            }
            checked += 1;
        }
        if (n as i64) < BATCH {
            break;
        }
    }
    let first_bad = verifier.finish(head_seq, &head_hash).err();
    Ok(Verification {
        entries: checked,
        head_seq,
        first_bad,
    })
}

/// Stores the policy's text under its version the first time that version is seen; returns
/// whether it was new.
pub fn record_policy_version(conn: &mut DbConnection, policy: &Policy) -> DbResult<bool> {
    let known: i64 = policy_versions::table
        .filter(policy_versions::version.eq(&policy.version))
        .count()
        .get_result(conn)?;
    if known > 0 {
        return Ok(false);
    }
    diesel::insert_into(policy_versions::table)
        .values((
            policy_versions::version.eq(&policy.version),
            policy_versions::name.eq(&policy.meta.name),
            policy_versions::content.eq(&policy.source),
            policy_versions::first_loaded_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(true)
}
