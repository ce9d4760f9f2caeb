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
        default_value_t = defaults::TOKEN_TTL_MINUTES
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
        default_value_t = defaults::MAX_BODY_BYTES
    )]
    pub max_body_bytes: usize,

    /// Largest CSV import accepted by upload or the API, in bytes (streamed to a temp file).
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_MAX_IMPORT_BYTES",
        default_value_t = defaults::MAX_IMPORT_BYTES
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

    /// The address people reach the server at, e.g. https://fairseg.example.com: every
    /// absolute link the server hands out (customers' preference links) starts with it,
    /// whatever Host header a request carries. Required by `serve`.
    #[arg(long, global = true, env = "FAIRSEG_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Directory where uploads are spooled while they are imported; leftovers are removed at
    /// start. [default: fairseg-spool beside the SQLite file, or in the working directory]
    #[arg(long, global = true, env = "FAIRSEG_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Largest value (one CSV cell) an import accepts, in bytes.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_IMPORT_MAX_CELL_BYTES",
        default_value_t = crate::imports::ImportLimits::DEFAULT.max_cell_bytes
    )]
    pub import_max_cell_bytes: usize,

    /// Most attribute columns (besides the id) a customer import accepts.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_IMPORT_MAX_COLUMNS",
        default_value_t = crate::imports::ImportLimits::DEFAULT.max_attribute_columns
    )]
    pub import_max_columns: usize,

    /// Seconds a client has to send a request's head once it has connected.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_REQUEST_TIMEOUT_SECONDS",
        default_value_t = defaults::REQUEST_TIMEOUT_SECONDS
    )]
    pub request_timeout_seconds: u64,

    /// Seconds a request body may stall (no byte arriving) before the request is answered
    /// 408 and the connection closed.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_BODY_TIMEOUT_SECONDS",
        default_value_t = defaults::BODY_TIMEOUT_SECONDS
    )]
    pub body_timeout_seconds: u64,

    /// Page and API reads worked on at once; the others wait their turn in arrival order.
    /// [default: twice the cores, at most the database pool's size]
    #[arg(long, global = true, env = "FAIRSEG_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,

    /// Seconds a read may wait for its turn before it is answered 503 with Retry-After.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_QUEUE_PATIENCE_SECONDS",
        default_value_t = defaults::QUEUE_PATIENCE_SECONDS
    )]
    pub queue_patience_seconds: u64,

    /// Runs this process executes at a time, claimed from the database (shared by every
    /// server on it); 0 serves only.
    #[arg(long, global = true, env = "FAIRSEG_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Seconds a claimed run stays held without a heartbeat; when it runs out, another process
    /// fails the run (or queues it again, if it never started).
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_JOB_LEASE_SECONDS",
        default_value_t = 30
    )]
    pub job_lease_seconds: u64,

    /// Seconds between two renewals of the leases of the runs a process executes.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_JOB_HEARTBEAT_SECONDS",
        default_value_t = 10
    )]
    pub job_heartbeat_seconds: u64,

    /// Milliseconds an idle worker waits before looking for queued runs again.
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_JOB_POLL_MS",
        default_value_t = 500
    )]
    pub job_poll_ms: u64,

    /// Comma-separated networks (CIDR) of reverse proxies whose X-Forwarded-For is believed:
    /// only a request arriving from one of them is counted against the right-most address of
    /// that header outside them. [default: none]
    #[arg(
        long,
        global = true,
        env = "FAIRSEG_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
}

/// How a process takes part in executing runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSettings {
    /// Worker threads (FAIRSEG_WORKERS); 0 executes nothing queued.
    pub workers: usize,
    /// How long a claim holds without a heartbeat (FAIRSEG_JOB_LEASE_SECONDS).
    pub lease: std::time::Duration,
    /// How often the leases held are renewed (FAIRSEG_JOB_HEARTBEAT_SECONDS).
    pub heartbeat: std::time::Duration,
    /// How long an idle worker waits between looks at the queue (FAIRSEG_JOB_POLL_MS).
    pub poll: std::time::Duration,
}

impl Default for JobSettings {
    fn default() -> JobSettings {
        JobSettings {
            workers: 1,
            lease: std::time::Duration::from_secs(30),
            heartbeat: std::time::Duration::from_secs(10),
            poll: std::time::Duration::from_millis(500),
        }
    }
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
    pub kpi_schedule: KpiSchedule,
    /// The public base URL (FAIRSEG_PUBLIC_URL); `serve` refuses to start without it.
    pub public_url: Option<PublicUrl>,
    /// Where uploads are spooled (FAIRSEG_SPOOL_DIR).
    pub spool_dir: PathBuf,
    /// Cell size and column count limits of imports.
    pub import_limits: crate::imports::ImportLimits,
    /// Time to receive a request head (FAIRSEG_REQUEST_TIMEOUT_SECONDS).
    pub request_timeout: std::time::Duration,
    /// Longest stall of a request body (FAIRSEG_BODY_TIMEOUT_SECONDS).
    pub body_timeout: std::time::Duration,
    /// Reads worked on at once (FAIRSEG_MAX_CONCURRENT_REQUESTS); `None`: chosen from the
    /// cores and the database pool at start.
    pub max_concurrent_requests: Option<usize>,
    /// How long a read waits for its turn (FAIRSEG_QUEUE_PATIENCE_SECONDS).
    pub queue_patience: std::time::Duration,
    /// Run workers, leases and heartbeats.
    pub jobs: JobSettings,
    /// Proxies whose X-Forwarded-For names the client (FAIRSEG_TRUSTED_PROXIES).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The command line's defaults, which [`Settings::for_database`] starts from too.
mod defaults {
    pub const TOKEN_TTL_MINUTES: i64 = 30;
    pub const MAX_BODY_BYTES: usize = 1_048_576;
    pub const MAX_IMPORT_BYTES: u64 = 512 * 1024 * 1024;
    pub const REQUEST_TIMEOUT_SECONDS: u64 = 10;
    pub const BODY_TIMEOUT_SECONDS: u64 = 30;
    pub const QUEUE_PATIENCE_SECONDS: u64 = 30;
}

/// The setting named in errors about the public URL.
pub const PUBLIC_URL_SETTING: &str = "public-url (FAIRSEG_PUBLIC_URL)";

/// How often the server evaluates KPIs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KpiSchedule {
    Off,
    Every(std::time::Duration),
}

impl KpiSchedule {
    /// `off`, `hourly` or `daily`.
    pub fn parse(s: &str) -> Option<KpiSchedule> {
        match s.trim() {
            "off" => Some(KpiSchedule::Off),
            "hourly" => Some(KpiSchedule::Every(std::time::Duration::from_secs(3600))),
            "daily" => Some(KpiSchedule::Every(std::time::Duration::from_secs(
                24 * 3600,
            ))),
            _ => None,
        }
    }
}

/// The base every absolute link starts with: http or https, a host, no credentials, query
/// or fragment; kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<PublicUrl, String> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| format!("`{raw}` is not an absolute URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{raw}` must start with http:// or https://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{raw}` names no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{raw}` must not hold a user name or password"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{raw}` must not have a query or fragment"));
        }
        Ok(PublicUrl(url.as_str().trim_end_matches('/').to_string()))
    }

    /// The absolute URL of a local path (which starts with `/`).
    pub fn join(&self, path: &str) -> String {
        debug_assert!(path.starts_with('/'));
        format!("{}{path}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Settings {
    /// The settings a program that embeds fairseg (a test, a benchmark) starts from: the
    /// command line's defaults, with no KPI schedule, no public URL and no signing key
    /// (the server makes and keeps one), so that each new setting has its default here and
    /// on the command line only.
    pub fn for_database(
        database_url: DatabaseUrl,
        policies_dir: PathBuf,
        spool_dir: PathBuf,
    ) -> Settings {
        Settings {
            database_url,
            policies_dir,
            token_ttl: chrono::Duration::minutes(defaults::TOKEN_TTL_MINUTES),
            cookie_secure: false,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_import_bytes: defaults::MAX_IMPORT_BYTES,
            signing_key: None,
            kpi_schedule: KpiSchedule::Off,
            public_url: None,
            spool_dir,
            import_limits: crate::imports::ImportLimits::DEFAULT,
            request_timeout: std::time::Duration::from_secs(defaults::REQUEST_TIMEOUT_SECONDS),
            body_timeout: std::time::Duration::from_secs(defaults::BODY_TIMEOUT_SECONDS),
            max_concurrent_requests: None,
            queue_patience: std::time::Duration::from_secs(defaults::QUEUE_PATIENCE_SECONDS),
            jobs: JobSettings::default(),
            trusted_proxies: Vec::new(),
        }
    }

    /// The public URL, which serving requires.
    pub fn require_public_url(&self) -> Result<&PublicUrl, ConfigError> {
        self.public_url.as_ref().ok_or(ConfigError::Invalid {
            setting: PUBLIC_URL_SETTING,
            reason: "is required to serve: the address people reach fairseg at, e.g. \
                     https://fairseg.example.com (links sent to customers start with it)"
                .into(),
        })
    }
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
            KpiSchedule::parse(&args.kpi_schedule).ok_or_else(|| ConfigError::Invalid {
                setting: "kpi-schedule (FAIRSEG_KPI_SCHEDULE)",
                reason: format!("must be off, hourly or daily, got `{}`", args.kpi_schedule),
            })?;
        let public_url = args
            .public_url
            .as_deref()
            .map(PublicUrl::parse)
            .transpose()
            .map_err(|reason| ConfigError::Invalid {
                setting: PUBLIC_URL_SETTING,
                reason,
            })?;
        let spool_dir = match &args.spool_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(ConfigError::Invalid {
                    setting: "spool-dir (FAIRSEG_SPOOL_DIR)",
                    reason: "must not be empty".into(),
                });
            }
            Some(dir) => dir.clone(),
            None => default_spool_dir(&database_url),
        };
        let import_limits = crate::imports::ImportLimits {
            max_cell_bytes: args.import_max_cell_bytes,
            max_attribute_columns: args.import_max_columns,
        };
        if !(16..=64 * 1024 * 1024).contains(&import_limits.max_cell_bytes) {
            return Err(ConfigError::Invalid {
                setting: "import-max-cell-bytes (FAIRSEG_IMPORT_MAX_CELL_BYTES)",
                reason: format!(
                    "must be between 16 and 67108864, got {}",
                    import_limits.max_cell_bytes
                ),
            });
        }
        if !(1..=100_000).contains(&import_limits.max_attribute_columns) {
            return Err(ConfigError::Invalid {
                setting: "import-max-columns (FAIRSEG_IMPORT_MAX_COLUMNS)",
                reason: format!(
                    "must be between 1 and 100000, got {}",
                    import_limits.max_attribute_columns
                ),
            });
        }
        for (setting, value) in [
            (
                "request-timeout-seconds (FAIRSEG_REQUEST_TIMEOUT_SECONDS)",
                args.request_timeout_seconds,
            ),
            (
                "body-timeout-seconds (FAIRSEG_BODY_TIMEOUT_SECONDS)",
                args.body_timeout_seconds,
            ),
            (
                "queue-patience-seconds (FAIRSEG_QUEUE_PATIENCE_SECONDS)",
                args.queue_patience_seconds,
            ),
        ] {
            if !(1..=3600).contains(&value) {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: format!("must be between 1 and 3600, got {value}"),
                });
            }
        }
        if let Some(n) = args.max_concurrent_requests
            && !(1..=1024).contains(&n)
        {
            return Err(ConfigError::Invalid {
                setting: "max-concurrent-requests (FAIRSEG_MAX_CONCURRENT_REQUESTS)",
                reason: format!("must be between 1 and 1024, got {n}"),
            });
        }
        if args.workers > 64 {
            return Err(ConfigError::Invalid {
                setting: "workers (FAIRSEG_WORKERS)",
                reason: format!("must be between 0 and 64, got {}", args.workers),
            });
        }
        if !(1..=3600).contains(&args.job_lease_seconds) {
            return Err(ConfigError::Invalid {
                setting: "job-lease-seconds (FAIRSEG_JOB_LEASE_SECONDS)",
                reason: format!("must be between 1 and 3600, got {}", args.job_lease_seconds),
            });
        }
        if args.job_heartbeat_seconds == 0 || args.job_heartbeat_seconds >= args.job_lease_seconds {
            return Err(ConfigError::Invalid {
                setting: "job-heartbeat-seconds (FAIRSEG_JOB_HEARTBEAT_SECONDS)",
                reason: format!(
                    "must be at least 1 and shorter than the lease ({} s), got {}",
                    args.job_lease_seconds, args.job_heartbeat_seconds
                ),
            });
        }
        if !(10..=60_000).contains(&args.job_poll_ms) {
            return Err(ConfigError::Invalid {
                setting: "job-poll-ms (FAIRSEG_JOB_POLL_MS)",
                reason: format!("must be between 10 and 60000, got {}", args.job_poll_ms),
            });
        }
        let jobs = JobSettings {
            workers: args.workers,
            lease: std::time::Duration::from_secs(args.job_lease_seconds),
            heartbeat: std::time::Duration::from_secs(args.job_heartbeat_seconds),
            poll: std::time::Duration::from_millis(args.job_poll_ms),
        };
        let trusted_proxies = args
            .trusted_proxies
            .iter()
            .map(|raw| raw.trim())
            .filter(|raw| !raw.is_empty())
            .map(parse_network)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ConfigError::Invalid {
                setting: "trusted-proxies (FAIRSEG_TRUSTED_PROXIES)",
                reason,
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
            public_url,
            spool_dir,
            import_limits,
            request_timeout: std::time::Duration::from_secs(args.request_timeout_seconds),
            body_timeout: std::time::Duration::from_secs(args.body_timeout_seconds),
            max_concurrent_requests: args.max_concurrent_requests,
            queue_patience: std::time::Duration::from_secs(args.queue_patience_seconds),
            jobs,
            trusted_proxies,
        })
    }
}

/// A network in CIDR notation; a bare address is a network of one.
fn parse_network(raw: &str) -> Result<ipnet::IpNet, String> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{raw}` is not a network like 10.0.0.0/8 or an address"))
}

/// `fairseg-spool` beside the SQLite file (the data directory), or in the working directory
/// for PostgreSQL.
fn default_spool_dir(database_url: &DatabaseUrl) -> PathBuf {
    let base = database_url
        .sqlite_path()
        .and_then(|p| std::path::Path::new(p).parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    base.join("fairseg-spool")
}

#[cfg(test)]
mod tests {
    use super::PublicUrl;

    #[test]
    fn public_urls_are_absolute_http_without_credentials_or_query() {
        assert_eq!(
            PublicUrl::parse("https://fairseg.example.com/")
                .unwrap()
                .join("/preferences/t"),
            "https://fairseg.example.com/preferences/t"
        );
        assert_eq!(
            PublicUrl::parse("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            PublicUrl::parse("https://example.com/fairseg/")
                .unwrap()
                .join("/x"),
            "https://example.com/fairseg/x"
        );
        for bad in [
            "fairseg.example.com",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=1",
            "https://example.com/#x",
            "",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
