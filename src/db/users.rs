//! Staff accounts.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{revoked_tokens, users};
use super::{DbConnection, DbResult};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub password_hash: String,
    pub token_version: i64,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
    pub password_changed_at: NaiveDateTime,
}

impl UserRow {
    pub fn find_by_email(conn: &mut DbConnection, email: &str) -> DbResult<Option<UserRow>> {
        Ok(users::table
            .filter(users::email.eq(email))
            .select(UserRow::as_select())
            .first(conn)
            .optional()?)
    }

    pub fn find(conn: &mut DbConnection, id: &str) -> DbResult<Option<UserRow>> {
        Ok(users::table
            .find(id)
            .select(UserRow::as_select())
            .first(conn)
            .optional()?)
    }

    pub fn all(conn: &mut DbConnection) -> DbResult<Vec<UserRow>> {
        Ok(users::table
            .order(users::email.asc())
            .select(UserRow::as_select())
            .load(conn)?)
    }

    pub fn count(conn: &mut DbConnection) -> DbResult<i64> {
        Ok(users::table.count().get_result(conn)?)
    }

    pub fn insert(
        conn: &mut DbConnection,
        id: &str,
        email: &str,
        role: &str,
        password_hash: &str,
    ) -> DbResult<()> {
        let now = super::now();
        diesel::insert_into(users::table)
            .values((
                users::id.eq(id),
                users::email.eq(email),
                users::role.eq(role),
                users::password_hash.eq(password_hash),
                users::token_version.eq(0i64),
                users::disabled.eq(false),
                users::created_at.eq(now),
                users::password_changed_at.eq(now),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// Sets a new password hash and ends every outstanding token of the user.
    pub fn set_password(conn: &mut DbConnection, id: &str, password_hash: &str) -> DbResult<()> {
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(password_hash),
                users::password_changed_at.eq(super::now()),
                users::token_version.eq(users::token_version + 1),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// Changes the role and ends outstanding tokens, which carry the old role.
    pub fn set_role(conn: &mut DbConnection, id: &str, role: &str) -> DbResult<()> {
        diesel::update(users::table.find(id))
            .set((
                users::role.eq(role),
                users::token_version.eq(users::token_version + 1),
            ))
            .execute(conn)?;
        Ok(())
    }

    pub fn set_disabled(conn: &mut DbConnection, id: &str, disabled: bool) -> DbResult<()> {
        diesel::update(users::table.find(id))
            .set((
                users::disabled.eq(disabled),
                users::token_version.eq(users::token_version + 1),
            ))
            .execute(conn)?;
        Ok(())
    }

    pub fn count_enabled_with_role(conn: &mut DbConnection, role: &str) -> DbResult<i64> {
        Ok(users::table
            .filter(users::role.eq(role))
            .filter(users::disabled.eq(false))
            .count()
            .get_result(conn)?)
    }
}

/// Records a signed-out token so it is refused until it would have expired anyway.
pub fn revoke_token(conn: &mut DbConnection, jti: &str, expires_at: NaiveDateTime) -> DbResult<()> {
    let already: i64 = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result(conn)?;
    if already == 0 {
        diesel::insert_into(revoked_tokens::table)
            .values((
                revoked_tokens::jti.eq(jti),
                revoked_tokens::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
    }
    // Expired tokens are refused by their `exp` anyway; keep the table small.
    diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(super::now())))
        .execute(conn)?;
    Ok(())
}

pub fn is_revoked(conn: &mut DbConnection, jti: &str) -> DbResult<bool> {
    let n: i64 = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}
