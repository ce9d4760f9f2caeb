//! Secrets the server keeps for itself.

use diesel::prelude::*;

use super::schema::server_secrets;
use super::{DbConnection, DbResult};

/// Returns the secret called `name`, creating it with `generate()` on first use. Concurrent
/// first runs agree on one value: the loser of the insert race reads the winner's.
pub fn get_or_create(
    conn: &mut DbConnection,
    name: &str,
    generate: impl FnOnce() -> String,
) -> DbResult<(String, bool)> {
    if let Some(value) = find(conn, name)? {
        return Ok((value, false));
    }
    let value = generate();
    let inserted = diesel::insert_into(server_secrets::table)
        .values((
            server_secrets::name.eq(name),
            server_secrets::value.eq(&value),
            server_secrets::created_at.eq(super::now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok((value, true)),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok((find(conn, name)?.unwrap_or(value), false)),
        Err(e) => Err(e.into()),
    }
}

pub fn find(conn: &mut DbConnection, name: &str) -> DbResult<Option<String>> {
    Ok(server_secrets::table
        .filter(server_secrets::name.eq(name))
        .select(server_secrets::value)
        .first::<String>(conn)
        .optional()?)
}
