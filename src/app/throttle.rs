//! Sign-in throttling over the counters every server shares: read them, let
//! `auth::throttle` decide, write them back in one transaction.

use std::time::Duration;

use crate::auth::throttle::{self, Record};
use crate::db::{self, Db, DbResult, throttle as store};

/// How long a sign-in as `email` from `client` must still wait, if locked out.
pub fn wait(db: &Db, email: &str, client: &str) -> DbResult<Option<Duration>> {
    let subjects = throttle::subjects(email, client).map(|(subject, _)| subject);
    let records = db.read(|conn| store::records(conn, &subjects))?;
    Ok(throttle::wait(&records, db::now()))
}

/// Counts a failed sign-in against the e-mail typed and the client.
pub fn record_failure(db: &Db, email: &str, client: &str) -> DbResult<()> {
    let now = db::now();
    db.write(|conn| {
        for (subject, free) in throttle::subjects(email, client) {
            let previous: Option<Record> = store::record(conn, &subject)?;
            let next = throttle::after_failure(previous.as_ref(), free, now);
            store::put(conn, &subject, &next)?;
        }
        let window = chrono::Duration::from_std(throttle::WINDOW).expect("an hour");
        store::prune(conn, now - window)?;
        Ok(())
    })
}

/// A successful sign-in clears the e-mail's failures (not the client's).
pub fn record_success(db: &Db, email: &str) -> DbResult<()> {
    db.write(|conn| store::remove(conn, &throttle::email_subject(email)))
}
