//! Staff accounts: creating them, signing in and out, passwords, roles, and resolving a token
//! to the signed-in user. Each state change is written together with its trail entry.

use serde_json::json;

use crate::auth::token::Claims;
use crate::auth::{CurrentUser, Email, Password, password};
use crate::db::users::{self, UserRow};
use crate::db::{Db, DbError, trail as trail_store};
use crate::policy::{Permission, Policy};
use crate::trail::{Actor, NewEntry};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0}")]
    WeakPassword(String),
    #[error("unknown role `{role}`; the policy defines: {known}")]
    UnknownRole { role: String, known: String },
    #[error("a user with e-mail {0} already exists")]
    Duplicate(String),
    #[error("the e-mail or password is wrong")]
    BadCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("no such user")]
    NotFound,
    #[error("this would leave no enabled admin, and nobody could manage accounts")]
    LastAdmin,
    #[error("the session is no longer valid; sign in again")]
    SessionEnded,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn check_role(policy: &Policy, role: &str) -> Result<(), AccountError> {
    if policy.role(role).is_some() {
        Ok(())
    } else {
        Err(AccountError::UnknownRole {
            role: role.to_string(),
            known: policy.roles.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

/// Creates an account.
pub fn create_user(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    email: &str,
    role: &str,
    password: String,
) -> Result<UserRow, AccountError> {
    let email = Email::parse(email).map_err(AccountError::InvalidEmail)?;
    check_role(policy, role)?;
    let password = Password::parse(password).map_err(AccountError::WeakPassword)?;
    let hash = password::hash(password.expose());
    let id = uuid::Uuid::now_v7().to_string();
    let created = db.write(|conn| {
        if UserRow::find_by_email(conn, email.as_str())?.is_some() {
            return Ok(None);
        }
        UserRow::insert(conn, &id, email.as_str(), role, &hash)?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "user.created",
                &id,
                json!({"email": email.as_str(), "role": role}),
            ),
            &policy.version,
        )?;
        UserRow::find(conn, &id)
    });
    match created {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(AccountError::Duplicate(email.to_string())),
        Err(e) if e.is_unique_violation() => Err(AccountError::Duplicate(email.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Checks credentials. Unknown e-mails cost one argon2 verification too.
pub fn authenticate(db: &Db, email: &str, password: &str) -> Result<UserRow, AccountError> {
    let user = match Email::parse(email) {
        Ok(email) => db.read(|conn| UserRow::find_by_email(conn, email.as_str()))?,
        Err(_) => None,
    };
    match user {
        Some(user) if !user.disabled && password::verify(password, &user.password_hash) => Ok(user),
        Some(_) => Err(AccountError::BadCredentials),
        None => {
            password::verify_against_dummy(password);
            Err(AccountError::BadCredentials)
        }
    }
}

/// Records a sign-in in the trail.
pub fn record_sign_in(
    db: &Db,
    policy: &Policy,
    user: &UserRow,
    via: &str,
) -> Result<(), AccountError> {
    db.write(|conn| {
        trail_store::append(
            conn,
            NewEntry::new(
                &Actor::user(&user.email),
                "auth.signed_in",
                &user.id,
                json!({"via": via}),
            ),
            &policy.version,
        )
    })?;
    Ok(())
}

/// Ends one session (its token) before it expires.
pub fn sign_out(db: &Db, policy: &Policy, user: &CurrentUser) -> Result<(), AccountError> {
    db.write(|conn| {
        users::revoke_token(conn, &user.jti, user.expires_at)?;
        trail_store::append(
            conn,
            NewEntry::new(
                &Actor::user(&user.email),
                "auth.signed_out",
                &user.id,
                json!({}),
            ),
            &policy.version,
        )
    })?;
    Ok(())
}

/// Changes one's own password; every outstanding token of the user stops working.
pub fn change_password(
    db: &Db,
    policy: &Policy,
    user: &CurrentUser,
    current: &str,
    new: String,
) -> Result<(), AccountError> {
    let row = db
        .read(|conn| UserRow::find(conn, &user.id))?
        .ok_or(AccountError::NotFound)?;
    if !password::verify(current, &row.password_hash) {
        return Err(AccountError::WrongCurrentPassword);
    }
    let new = Password::parse(new).map_err(AccountError::WeakPassword)?;
    let hash = password::hash(new.expose());
    db.write(|conn| {
        UserRow::set_password(conn, &user.id, &hash)?;
        trail_store::append(
            conn,
            NewEntry::new(
                &Actor::user(&user.email),
                "user.password_changed",
                &user.id,
                json!({}),
            ),
            &policy.version,
        )
    })?;
    Ok(())
}

/// Sets another user's password (admin reset); their sessions end.
pub fn reset_password(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    user_id: &str,
    new: String,
) -> Result<(), AccountError> {
    let new = Password::parse(new).map_err(AccountError::WeakPassword)?;
    let hash = password::hash(new.expose());
    db.write(|conn| {
        if UserRow::find(conn, user_id)?.is_none() {
            return Err(AccountError::NotFound);
        }
        UserRow::set_password(conn, user_id, &hash)?;
        trail_store::append(
            conn,
            NewEntry::new(actor, "user.password_reset", user_id, json!({})),
            &policy.version,
        )?;
        Ok(())
    })
}

/// Changes a user's role.
pub fn set_role(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    user_id: &str,
    role: &str,
) -> Result<(), AccountError> {
    check_role(policy, role)?;
    db.write(|conn| {
        let Some(user) = UserRow::find(conn, user_id)? else {
            return Err(AccountError::NotFound);
        };
        if user.role == "admin"
            && role != "admin"
            && !user.disabled
            && UserRow::count_enabled_with_role(conn, "admin")? <= 1
        {
            return Err(AccountError::LastAdmin);
        }
        UserRow::set_role(conn, user_id, role)?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "user.role_changed",
                user_id,
                json!({"from": user.role, "to": role}),
            ),
            &policy.version,
        )?;
        Ok(())
    })
}

/// Disables or re-enables an account; disabling ends its sessions.
pub fn set_disabled(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    user_id: &str,
    disabled: bool,
) -> Result<(), AccountError> {
    db.write(|conn| {
        let Some(user) = UserRow::find(conn, user_id)? else {
            return Err(AccountError::NotFound);
        };
        if disabled
            && user.role == "admin"
            && !user.disabled
            && UserRow::count_enabled_with_role(conn, "admin")? <= 1
        {
            return Err(AccountError::LastAdmin);
        }
        UserRow::set_disabled(conn, user_id, disabled)?;
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        trail_store::append(
            conn,
            NewEntry::new(actor, action, user_id, json!({})),
            &policy.version,
        )?;
        Ok(())
    })
}

/// Resolves verified token claims to the current user: the account must exist, be enabled,
/// hold the token's version (no password or role change since), and the token must not have
/// been signed out.
pub fn session_user(
    db: &Db,
    policy: &Policy,
    claims: &Claims,
    via_cookie: bool,
) -> Result<CurrentUser, AccountError> {
    let (user, revoked) = db.read(|conn| {
        Ok((
            UserRow::find(conn, &claims.sub)?,
            users::is_revoked(conn, &claims.jti)?,
        ))
    })?;
    let user = user.ok_or(AccountError::SessionEnded)?;
    if user.disabled || user.token_version != claims.ver || revoked {
        return Err(AccountError::SessionEnded);
    }
    let permissions: Vec<Permission> = policy
        .role(&user.role)
        .map(|r| r.permissions.iter().copied().collect())
        .unwrap_or_default();
    Ok(CurrentUser {
        id: user.id,
        email: user.email,
        role: user.role,
        permissions,
        jti: claims.jti.clone(),
        expires_at: claims.expires_at(),
        via_cookie,
    })
}
