//! Typed settings, read once at start from the command line and the environment, validated
//! with a message that names the setting at fault.

use std::path::PathBuf;

use clap::Args;

use crate::db::{DatabaseUrl, DbError};

/// Options every command shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Database: postgres://… for PostgreSQL, or an SQLite file path (sqlite://PATH also works).
    /// [default: fairseg.db; fairseg-demo.db for `demo`]
    #[arg(long, global = true, env = "FAIRSEG_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory holding policy.toml.
    #[arg(
        long = "policies",
        global = true,
        env = "FAIRSEG_POLICIES",
        default_value = "policies"
    )]
    pub policies_dir: PathBuf,

    /// Minutes a sign-in lasts before the user must sign in again.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_TOKEN_TTL_MINUTES",
        default_value_t = 30
    )]
    pub token_ttl_minutes: i64,

    /// Mark cookies Secure (set when serving behind TLS).
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_COOKIE_SECURE",
        default_value_t = false
    )]
    pub cookie_secure: bool,

    /// Largest request body accepted, in bytes.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,

    /// Largest CSV import accepted by upload or the API, in bytes (streamed to a temp file).
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_MAX_IMPORT_BYTES",
        default_value_t = 512 * 1024 * 1024
    )]
    pub max_import_bytes: u64,

    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,

    /// How often the server evaluates every KPI by itself (the period of the policy's
    /// kpi.period containing yesterday): off, hourly or daily.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_KPI_SCHEDULE",
        default_value = "daily"
    )]
    pub kpi_schedule: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub policies_dir: PathBuf,
    pub token_ttl: chrono::Duration,
    pub cookie_secure: bool,
    pub max_body_bytes: usize,
    /// Largest import upload (FAIRSEG_MAX_IMPORT_BYTES); larger ones get 413.
    pub max_import_bytes: u64,
    /// The token signing secret from FAIRSEG_SIGNING_KEY; when absent the server generates
    /// one on first run and keeps it in the database.
    pub signing_key: Option<Secret>,
    /// The server's own KPI evaluations (FAIRSEG_KPI_SCHEDULE).
    pub kpi_schedule: crate::kpi::service::Schedule,
}

/// A secret that never appears in logs or debug output.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting `{setting}` is invalid: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

pub const SIGNING_KEY_ENV: &str = "FAIRSEG_SIGNING_KEY";
const MIN_SIGNING_KEY_BYTES: usize = 32;

impl Settings {
    /// Validates the arguments; `default_database` applies when no URL was given.
    pub fn from_args(args: &GlobalArgs, default_database: &str) -> Result<Settings, ConfigError> {
        let database_url = DatabaseUrl::parse(
            args.database_url.as_deref().unwrap_or(default_database),
        )
        .map_err(|e| ConfigError::Invalid {
            setting: "database-url (FAIRSEG_DATABASE_URL)",
            reason: match e {
                DbError::InvalidUrl { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        if !(1..=24 * 60).contains(&args.token_ttl_minutes) {
            return Err(ConfigError::Invalid {
                setting: "token-ttl-minutes (FAIRSEG_TOKEN_TTL_MINUTES)",
                reason: format!("must be between 1 and 1440, got {}", args.token_ttl_minutes),
            });
        }
        if args.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max-body-bytes (FAIRSEG_MAX_BODY_BYTES)",
                reason: "must be at least 1024".into(),
            });
        }
        if args.max_import_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max-import-bytes (FAIRSEG_MAX_IMPORT_BYTES)",
                reason: "must be at least 1024".into(),
            });
        }
        let kpi_schedule =
            crate::kpi::service::Schedule::parse(&args.kpi_schedule).ok_or_else(|| {
                ConfigError::Invalid {
                    setting: "kpi-schedule (FAIRSEG_KPI_SCHEDULE)",
                    reason: format!("must be off, hourly or daily, got `{}`", args.kpi_schedule),
                }
            })?;
        let signing_key = match std::env::var(SIGNING_KEY_ENV) {
            Ok(key) if key.len() < MIN_SIGNING_KEY_BYTES => {
                return Err(ConfigError::Invalid {
                    setting: SIGNING_KEY_ENV,
                    reason: format!("must be at least {MIN_SIGNING_KEY_BYTES} bytes long"),
                });
            }
            Ok(key) => Some(Secret(key.into_bytes())),
            Err(_) => None,
        };
        Ok(Settings {
            database_url,
            policies_dir: args.policies_dir.clone(),
            token_ttl: chrono::Duration::minutes(args.token_ttl_minutes),
            cookie_secure: args.cookie_secure,
            max_body_bytes: args.max_body_bytes,
            max_import_bytes: args.max_import_bytes,
            signing_key,
            kpi_schedule,
        })
    }
}
