//! Storage: one connection type over SQLite and PostgreSQL, a pool, per-connection pragmas,
//! embedded migrations, and the queries of each area (one file per area below `db/`).

// Defined before the area modules, which use them.
/// Rows per multi-row INSERT on SQLite (`write_rows!`), well below its bind-parameter limit.
pub const SQLITE_ROWS: usize = 500;

/// Rows per COPY on PostgreSQL (`write_rows!`): one statement streams this many rows, so a
/// write of millions holds only one such slice of encoded rows at a time.
pub const COPY_ROWS: usize = 100_000;

/// Writes rows (an iterator of `column.eq(value)` tuples) into a table, the one way every bulk
/// writer goes: PostgreSQL takes them with `COPY … FROM STDIN (FORMAT binary)` (diesel's
/// `copy_from`), SQLite with multi-row INSERTs of `SQLITE_ROWS` rows, whose full batches go
/// in as fixed-size arrays that diesel prepares once and keeps in its cache. Either way the
/// rows go in inside the caller's transaction: a failure part-way leaves nothing once that
/// rolls back. Evaluates to the number of rows written (`QueryResult<usize>`).
macro_rules! write_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let mut rows = ::std::iter::IntoIterator::into_iter($rows).peekable();
        let conn: &mut $crate::db::DbConnection = $conn;
        let mut written: usize = 0;
        let result: diesel::QueryResult<usize> = (|| {
            match conn {
                $crate::db::DbConnection::Postgres(c) => {
                    while rows.peek().is_some() {
                        let slice: Vec<_> = rows.by_ref().take($crate::db::COPY_ROWS).collect();
                        written += diesel::copy_from($table)
                            .from_insertable(slice)
                            .execute(c)?;
                    }
                }
                $crate::db::DbConnection::Sqlite(c) => {
                    while rows.peek().is_some() {
                        let slice: Vec<_> = rows.by_ref().take($crate::db::SQLITE_ROWS).collect();
                        written += match <Box<[_; $crate::db::SQLITE_ROWS]>>::try_from(slice) {
                            Ok(full) => diesel::insert_into($table).values(full).execute(c)?,
                            Err(rest) => diesel::insert_into($table).values(&rest).execute(c)?,
                        };
                    }
                }
            }
            Ok(written)
        })();
        result
    }};
}

/// Streams `(id, text)` of every row of a table in storage order to a closure taking
/// `(i64, String)`, the one way the million-row readers (a run's attributes, the protected
/// attributes beside it) go. PostgreSQL sends them by `COPY table (id, text) TO STDOUT (FORMAT
/// binary)` (diesel's `copy_to`, read by [`read_id_text_copy`]): each row is handed over as it
/// arrives, where a SELECT's result is received whole before its first row is (the parsing
/// thread idle meanwhile). SQLite steps through a SELECT. Evaluates to `DbResult<()>`.
macro_rules! for_each_id_text {
    ($conn:expr, $table:ident, $id:ident, $text:ident, $f:expr) => {{
        let conn: &mut $crate::db::DbConnection = $conn;
        let mut f = $f;
        let result: $crate::db::DbResult<()> = (|| {
            match conn {
                $crate::db::DbConnection::Postgres(c) => {
                    let read = diesel::copy_to(($table::$id, $table::$text))
                        .with_format(diesel::pg::CopyFormat::Binary)
                        .load_raw(c)
                        .map_err($crate::db::DbError::from)
                        .and_then(|copy| $crate::db::read_id_text_copy(copy, &mut f));
                    $crate::db::end_copy_to(c, read)?;
                }
                $crate::db::DbConnection::Sqlite(c) => {
                    let rows =
                        $table::table
                            .select(($table::$id, $table::$text))
                            .load_iter::<(i64, String), diesel::connection::DefaultLoadingMode>(c)?;
                    for row in rows {
                        let (id, text) = row?;
                        f(id, text);
                    }
                }
            }
            Ok(())
        })();
        result
    }};
}

pub mod audits;
pub mod consent;
pub mod consent_state;
pub mod customers;
pub mod demo;
pub mod disclosures;
pub mod drift;
pub mod dsr;
pub mod features;
pub mod imports;
pub mod jobs;
pub mod kpi;
pub mod record;
pub mod retention;
pub mod schema;
pub mod secrets;
pub mod segmentation;
pub mod signoffs;
pub mod throttle;
pub mod trail;
pub mod users;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend. Queries written against it run on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    /// The system would not start a thread (imports read beside writing).
    #[error("cannot start a worker thread: {0}")]
    Thread(String),
    /// A COPY's data not in the format asked for, or cut short.
    #[error("{0}")]
    Copy(String),
}

impl DbError {
    /// Whether this is a unique-constraint violation (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Which backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parsed database URL. `postgres://` and `postgresql://` select PostgreSQL; `sqlite://PATH`,
/// `sqlite:PATH` or a plain file path select SQLite.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What the driver receives: the full URL for PostgreSQL, the file path for SQLite.
    target: String,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, DbError> {
        let url = url.trim();
        let invalid = |reason: &str| DbError::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        if url.is_empty() {
            return Err(invalid("it is empty"));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
            return Ok(DatabaseUrl {
                backend: Backend::Postgres,
                target: url.to_string(),
            });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            return Err(invalid("no SQLite file path given"));
        }
        if path.contains("://") {
            return Err(invalid(
                "unsupported scheme: use postgres://…, sqlite://PATH or a file path",
            ));
        }
        Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            target: path.to_string(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file path, for SQLite URLs.
    pub fn sqlite_path(&self) -> Option<&str> {
        (self.backend == Backend::Sqlite).then_some(self.target.as_str())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.target))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.target))
    }
}

/// Hides a password in a URL so it can be logged.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// libpq tries GSSAPI (Kerberos) encryption first unless told otherwise, and Debian's libpq
/// then initialises krb5, whose thread-specific destructors can abort a multi-threaded process
/// at exit (`krb5int_getspecific: Assertion ... failed`, seen here on `fairseg retention
/// apply`). Nobody who has not configured Kerberos gains from the attempt, so it is off unless
/// the URL asks for it with its own `gssencmode`.
fn without_gss_by_default(target: &str) -> String {
    if target.contains("gssencmode") {
        return target.to_string();
    }
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        let separator = if target.contains('?') { '&' } else { '?' };
        format!("{target}{separator}gssencmode=disable")
    } else {
        format!("{target} gssencmode=disable")
    }
}

/// Opens connections for the pool, choosing the backend by URL scheme (not by trial, as
/// `MultiConnection::establish` would) and applying SQLite's pragmas to every new connection.
pub struct ConnectionManager {
    url: DatabaseUrl,
}

/// The page size of a new SQLite database, in bytes (SQLite's default is 4096). Writes of many
/// rows go through the write-ahead log and again through the checkpoint page by page, so
/// fewer, larger pages cost fewer calls and less bookkeeping: in the sqlite3 shell, the
/// storage side of a million-customer import (rows, two unique indexes, commit with its
/// checkpoint) took 2.3-2.8 s with 16 KiB pages against 3.2-3.9 s with 4 KiB ones, the commit
/// 0.8 s against 1.3 s. Larger pages still would help bulk writes more (64 KiB: commit 0.5 s)
/// but make every small write (a session, a consent, a trail entry) log a larger page.
/// Databases created before keep their page size: SQLite cannot change it in WAL mode.
pub const SQLITE_PAGE_SIZE: u32 = 16 * 1024;

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match self.url.backend {
            Backend::Postgres => {
                diesel::PgConnection::establish(&without_gss_by_default(&self.url.target))
                    .map(DbConnection::Postgres)
                    .map_err(r2d2::Error::ConnectionError)
            }
            Backend::Sqlite => {
                sqlite_without_locks();
                let mut conn = diesel::SqliteConnection::establish(&self.url.target)
                    .map_err(r2d2::Error::ConnectionError)?;
                // A new database gets pages of `SQLITE_PAGE_SIZE` (before WAL is turned on:
                // afterwards the size is fixed; an existing database keeps its own). WAL lets
                // readers proceed during a write; NORMAL is durable at checkpoints, which WAL
                // makes safe; diesel leaves foreign keys off unless asked. Temporary storage in
                // memory keeps the statement journal of each multi-row INSERT of an import off
                // the disk (it must be set before a transaction begins).
                conn.batch_execute(&format!(
                    "PRAGMA page_size = {SQLITE_PAGE_SIZE}; \
                     PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA temp_store = MEMORY;",
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// Process-wide SQLite set-up, before the first connection:
///
/// - SQLite's serialized mode takes a mutex on every call (each value read of every row), and
///   its memory statistics one on every allocation. Neither is needed: a connection is used by
///   one thread at a time (the pool lends it to one caller, and diesel's connection is not
///   `Sync`), which is SQLite's multi-thread mode. If SQLite has already started, the call is
///   refused and SQLite stays serialized.
/// - Every connection gets the query planner stability guarantee (QPSG). Without it SQLite
///   (3.47 and later) reads a bound `LIMIT` while planning, and marks the statement to be
///   compiled again whenever that parameter is bound anew. diesel binds the `LIMIT 1` of every
///   `.first()`, so each of those statements, although cached, was compiled again on every
///   execution: a tenth of the CPU of a page view. With QPSG the plan ignores bound values,
///   which costs us nothing: we keep no `ANALYZE` statistics, and our one bound `LIKE` (the
///   trail's action prefix) has an `ESCAPE` and a case-insensitive match, neither of which its
///   index range could serve. diesel does not hand out its raw handle, so the setting comes
///   from an automatic extension, which SQLite runs on each connection it opens.
fn sqlite_without_locks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config takes these options with no further arguments (MEMSTATUS
        // takes an int); it changes global state only before sqlite3_initialize, which
        // `Once` and the call order here (before the first connection) guarantee, and
        // returns SQLITE_MISUSE otherwise. An automatic extension is called with the new
        // connection's handle, which `stable_plans` uses only for the length of the call.
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD);
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0);
            libsqlite3_sys::sqlite3_auto_extension(Some(stable_plans));
        }
    });
}

/// Turns on the query planner stability guarantee for a connection SQLite has just opened
/// (see [`sqlite_without_locks`]). A refusal leaves the connection as SQLite made it, which is
/// slower but correct, so the connection is never failed for it.
unsafe extern "C" fn stable_plans(
    db: *mut libsqlite3_sys::sqlite3,
    _error: *mut *mut std::os::raw::c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> std::os::raw::c_int {
    // SAFETY: `db` is the connection SQLite is opening; ENABLE_QPSG takes an int and an
    // optional int pointer for the resulting setting.
    unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::os::raw::c_int,
            std::ptr::null_mut::<std::os::raw::c_int>(),
        );
    }
    libsqlite3_sys::SQLITE_OK
}

pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// Who checks the foreign keys of an import's rows ([`Db::write_import`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChecks {
    /// The database, row by row, as every other write.
    ByDatabase,
    /// The import itself, before writing (every customer a row names exists): SQLite's check
    /// of each row, a B-tree seek in the customers' table, is skipped.
    ByImport,
}

/// The database handle shared by the server and the CLI.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<ConnectionManager>,
    url: DatabaseUrl,
    /// SQLite allows one writer at a time; taking this in-process lock before a write
    /// transaction turns would-be `SQLITE_BUSY` failures between our own workers into waits.
    write_lock: Arc<Mutex<()>>,
}

/// Runs `first`, then `f`, in one transaction on `conn`: all of it or nothing. The work's own
/// error is kept aside and returned as it was: when SQLite has already rolled the transaction
/// back itself (a full disk, for one), diesel's rollback fails and would report only "cannot
/// rollback - no transaction is active", hiding why the work failed.
fn in_transaction<T, E: From<DbError>>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    first: impl FnOnce(&mut DbConnection) -> DbResult<()>,
) -> Result<T, E> {
    let mut failure = None;
    let result = conn.transaction::<T, DbError, _>(|conn| {
        first(conn)?;
        f(conn).map_err(|e| {
            failure = Some(e);
            DbError::Query(diesel::result::Error::RollbackTransaction)
        })
    });
    match (result, failure) {
        (Err(_), Some(failure)) => Err(failure),
        (result, _) => result.map_err(E::from),
    }
}

impl Db {
    /// Connects, and applies any pending migrations.
    pub fn connect(url: &DatabaseUrl) -> DbResult<Db> {
        let db = Db::open(url)?;
        db.migrate()?;
        Ok(db)
    }

    /// Connects without touching the schema.
    pub fn open(url: &DatabaseUrl) -> DbResult<Db> {
        let max_size = match url.backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            // Open connections as needed: a pool per test server must not exhaust the server.
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(15))
            // A PostgreSQL connection breaks when its server restarts, so it is tried before
            // each loan; a SQLite connection is a file handle that cannot, and the test (a
            // statement parsed and run on every loan, several per page) was a tenth of a
            // dashboard view's CPU.
            .test_on_check_out(url.backend == Backend::Postgres)
            .build(ConnectionManager { url: url.clone() })
            .map_err(|e| DbError::Connect(e.to_string()))?;
        Ok(Db {
            pool,
            url: url.clone(),
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The most connections the pool lends at once.
    pub fn max_connections(&self) -> usize {
        self.pool.max_size() as usize
    }

    pub fn backend(&self) -> Backend {
        self.url.backend
    }

    /// A PostgreSQL connection outside the pool, for a session that lives as long as the
    /// process (`LISTEN`); `None` on SQLite.
    pub fn dedicated_postgres(&self) -> DbResult<Option<diesel::PgConnection>> {
        if self.url.backend != Backend::Postgres {
            return Ok(None);
        }
        diesel::PgConnection::establish(&without_gss_by_default(&self.url.target))
            .map(Some)
            .map_err(|e| DbError::Connect(e.to_string()))
    }

    pub fn conn(&self) -> DbResult<PooledConnection> {
        Ok(self.pool.get()?)
    }

    /// A connection if one is free now, without waiting (for work that can also be done on a
    /// connection already held).
    pub fn spare_conn(&self) -> Option<PooledConnection> {
        self.pool.try_get()
    }

    /// Applies pending migrations; returns the names of those applied.
    pub fn migrate(&self) -> DbResult<Vec<String>> {
        let mut conn = self.conn()?;
        let applied = match &mut *conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(applied.iter().map(|v| v.to_string()).collect())
    }

    /// Reverts every migration, newest first (used to test that each `down.sql` works).
    pub fn revert_all_migrations(&self) -> DbResult<usize> {
        let mut conn = self.conn()?;
        let reverted = match &mut *conn {
            DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.revert_all_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(reverted.len())
    }

    /// Runs `f` in a read transaction-free connection.
    pub fn read<T>(&self, f: impl FnOnce(&mut DbConnection) -> DbResult<T>) -> DbResult<T> {
        let mut conn = self.conn()?;
        f(&mut conn)
    }

    /// Runs `f` in one read transaction that sees one state of the database throughout, even
    /// while others commit: SQLite's (WAL) snapshot taken at the first read, PostgreSQL's
    /// `REPEATABLE READ`. Nothing is written.
    pub fn snapshot<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn()?;
        in_transaction(&mut conn, f, |conn| {
            if let DbConnection::Postgres(c) = conn {
                c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            }
            Ok(())
        })
    }

    /// A mark of the data the database shows now, equal between two readings only if no
    /// transaction that wrote anything ended between them, whichever connection or process
    /// wrote: PostgreSQL's current snapshot (`xmin:xmax:xip`; a write that commits or aborts
    /// moves `xmax` or leaves `xip`). So reads made between two equal marks saw exactly the data
    /// of the mark, and anything computed from them holds for as long as the mark is read again
    /// (`app::kept::Shown`). `None` on SQLite, whose connections share no such mark (its
    /// `data_version` is per connection).
    pub fn shown_state(&self) -> DbResult<Option<String>> {
        if self.url.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut conn = self.conn()?;
        let DbConnection::Postgres(c) = &mut *conn else {
            unreachable!("a PostgreSQL URL lends PostgreSQL connections")
        };
        Ok(Some(
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "pg_current_snapshot()::text",
            ))
            .get_result(c)?,
        ))
    }

    /// Runs `f` in one write transaction: all of it or nothing. The work may fail with its own
    /// error type (a use case's refusal, say); any such error rolls the transaction back and
    /// comes back as it was.
    pub fn write<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_on(&mut *self.conn()?, f)
    }

    /// `write` for an import: on SQLite the connection's temporary database, if a statement
    /// before opened one (the migrations' checks do), is closed first, outside any
    /// transaction, by changing `temp_store` (and back). Inside the transaction SQLite refuses
    /// to change temporary storage while that database is open, and a bulk import changes it
    /// to files for its index builds (`db::imports::DroppedIndexes::restore`).
    ///
    /// With [`KeyChecks::ByImport`], SQLite does not check each row's foreign keys: the
    /// import has checked that every customer a row names exists (a located error
    /// otherwise), inside this transaction, which holds the write lock, so no writer can
    /// remove one meanwhile. SQLite only turns its checks off outside a transaction, per
    /// connection, so the import gets a connection of its own, opened for it and closed after
    /// it: no other work ever runs on a connection without the checks, whether the import
    /// succeeds, fails or panics. PostgreSQL checks as always (a bulk import drops and re-adds
    /// its keys, `db::imports::DroppedIndexes`).
    pub fn write_import<T, E: From<DbError>>(
        &self,
        keys: KeyChecks,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.url.backend == Backend::Sqlite && keys == KeyChecks::ByImport {
            let mut own = ConnectionManager {
                url: self.url.clone(),
            }
            .connect()
            .map_err(|e| DbError::Connect(e.to_string()))?;
            own.batch_execute("PRAGMA foreign_keys = OFF")
                .map_err(DbError::from)?;
            return self.write_on(&mut own, f);
        }
        let mut conn = self.conn()?;
        if let DbConnection::Sqlite(c) = &mut *conn {
            // Setting the value it already has is a no-op that leaves the temporary database
            // open; a change closes it, so change it and change it back.
            c.batch_execute("PRAGMA temp_store = FILE; PRAGMA temp_store = MEMORY")
                .map_err(DbError::from)?;
        }
        self.write_on(&mut conn, f)
    }

    /// [`Db::write`] for a write of many rows (a run's million memberships): on SQLite its
    /// commit does not also copy the write-ahead log into the database (the automatic
    /// checkpoint that a commit past a thousand pages of log runs, tens of megabytes and a
    /// sync), so the caller can go on at once and leave that to [`Db::checkpoint_beside`].
    /// What is committed is as durable as after any commit (`synchronous = NORMAL`: the log
    /// is synced at checkpoints).
    pub fn write_deferring_checkpoint<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn()?;
        if self.url.backend == Backend::Postgres {
            return self.write_on(&mut conn, f);
        }
        conn.batch_execute("PRAGMA wal_autocheckpoint = 0")
            .map_err(DbError::from)?;
        let result = self.write_on(&mut conn, f);
        // Back to SQLite's default for whoever borrows the connection next.
        if let Err(error) = conn.batch_execute("PRAGMA wal_autocheckpoint = 1000") {
            tracing::error!(%error, "cannot turn automatic checkpoints back on");
        }
        result
    }

    /// SQLite: copies the write-ahead log into the database on a thread of its own, with a
    /// connection that is free now (none free: the next commit's automatic checkpoint does it),
    /// after writes made with [`Db::write_deferring_checkpoint`]. A passive checkpoint: it
    /// waits for no one, and writers and readers go on meanwhile. Nothing on PostgreSQL.
    pub fn checkpoint_beside(&self) {
        if self.url.backend == Backend::Postgres {
            return;
        }
        let Some(mut conn) = self.spare_conn() else {
            return;
        };
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                Ok(()) => tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "write-ahead log checkpointed beside"
                ),
                Err(error) => tracing::debug!(%error, "checkpoint beside not done"),
            }
        });
    }

    /// [`Db::write`] on a connection already borrowed.
    fn write_on<T, E: From<DbError>>(
        &self,
        conn: &mut DbConnection,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let _guard = match self.url.backend {
            Backend::Sqlite => Some(self.write_lock.lock().unwrap_or_else(|p| p.into_inner())),
            Backend::Postgres => None,
        };
        in_transaction(conn, f, |conn| {
            // Take the write lock first (SQLite: RESERVED; PostgreSQL: the head row), so the
            // transaction never has to upgrade a stale read snapshot to a write.
            diesel::update(schema::trail_head::table)
                .set(schema::trail_head::seq.eq(schema::trail_head::seq))
                .execute(conn)?;
            Ok(())
        })
    }
}

/// The current instant, truncated to microseconds so it reads back unchanged from either
/// backend (PostgreSQL keeps microseconds) and hashes the same when the trail is verified.
pub fn now() -> NaiveDateTime {
    crate::time::truncate_to_micros(Utc::now().naive_utc())
}

/// Reads `COPY … (id bigint, text text) TO STDOUT (FORMAT binary)` to its end, handing each
/// row to `f`: the signature and header, then per row its field count (2), each field's
/// length and bytes, then the trailer (-1), then the end of the data.
pub fn read_id_text_copy(
    mut input: impl std::io::BufRead,
    f: &mut impl FnMut(i64, String),
) -> DbResult<()> {
    use std::io::Read;
    let broken = |what: &str| DbError::Copy(format!("COPY TO STDOUT: {what}"));
    let io = |e: std::io::Error| DbError::Copy(format!("COPY TO STDOUT: {e}"));
    let mut header = [0u8; 19];
    input.read_exact(&mut header).map_err(io)?;
    if &header[..11] != b"PGCOPY\n\xff\r\n\0" {
        return Err(broken("not the binary format's signature"));
    }
    let extension = u32::from_be_bytes(header[15..19].try_into().expect("4 bytes"));
    std::io::copy(
        &mut input.by_ref().take(u64::from(extension)),
        &mut std::io::sink(),
    )
    .map_err(io)?;
    let mut word = [0u8; 4];
    loop {
        let mut count = [0u8; 2];
        input.read_exact(&mut count).map_err(io)?;
        match i16::from_be_bytes(count) {
            -1 => break,
            2 => {}
            _ => return Err(broken("a row without two fields")),
        }
        input.read_exact(&mut word).map_err(io)?;
        if i32::from_be_bytes(word) != 8 {
            return Err(broken("an id that is not a bigint"));
        }
        let mut id = [0u8; 8];
        input.read_exact(&mut id).map_err(io)?;
        input.read_exact(&mut word).map_err(io)?;
        let len =
            usize::try_from(i32::from_be_bytes(word)).map_err(|_| broken("a text that is NULL"))?;
        let mut text = vec![0u8; len];
        input.read_exact(&mut text).map_err(io)?;
        let text = String::from_utf8(text).map_err(|_| broken("a text that is not UTF-8"))?;
        f(i64::from_be_bytes(id), text);
    }
    // The end of the data (libpq's last read of the COPY).
    loop {
        let n = input.fill_buf().map_err(io)?.len();
        if n == 0 {
            return Ok(());
        }
        input.consume(n);
    }
}

/// Ends a `COPY … TO STDOUT` on `conn`, however its reading went: diesel hands the data over
/// but never collects the statement's final result, which leaves the connection refusing the
/// next command ("another command is already in progress"). A simple-protocol statement
/// (libpq's `PQexec`) collects and drops what is left of the COPY before it runs.
pub fn end_copy_to(conn: &mut diesel::PgConnection, read: DbResult<()>) -> DbResult<()> {
    let ended = conn.batch_execute("SELECT 1").map_err(DbError::from);
    read.and(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `COPY (id, text) TO STDOUT (FORMAT binary)` of `rows`, as PostgreSQL sends it.
    fn binary_copy(rows: &[(i64, &str)]) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend(0i32.to_be_bytes());
        out.extend(4i32.to_be_bytes());
        out.extend(b"xxxx"); // a header extension, skipped
        for (id, text) in rows {
            out.extend(2i16.to_be_bytes());
            out.extend(8i32.to_be_bytes());
            out.extend(id.to_be_bytes());
            out.extend((text.len() as i32).to_be_bytes());
            out.extend(text.as_bytes());
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    #[test]
    fn a_binary_copy_hands_over_every_row_and_a_cut_one_is_an_error() {
        let rows = [(1, r#"{"a":1}"#), (-7, ""), (1 << 40, "é\\\t")];
        let data = binary_copy(&rows);
        let mut read = Vec::new();
        read_id_text_copy(&data[..], &mut |id, text| read.push((id, text))).unwrap();
        let expected: Vec<(i64, String)> = rows.iter().map(|&(i, t)| (i, t.to_string())).collect();
        assert_eq!(read, expected);

        let cut = &data[..data.len() - 5];
        let err = read_id_text_copy(cut, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().starts_with("COPY TO STDOUT"), "{err}");
        let err = read_id_text_copy(&b"id,text\n"[..], &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("COPY TO STDOUT"), "{err}");
    }

    #[test]
    fn a_write_that_fills_the_disk_says_so_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(&dir.path().join("full.db").display().to_string()).unwrap();
        let db = Db::connect(&url).unwrap();
        let err = db
            .write::<_, DbError>(|conn| {
                // A database that may not grow stands in for a full disk.
                conn.batch_execute("CREATE TABLE filler (v TEXT); PRAGMA max_page_count = 200;")?;
                for _ in 0..1000 {
                    diesel::sql_query("INSERT INTO filler VALUES (?)")
                        .bind::<diesel::sql_types::Text, _>("x".repeat(4000))
                        .execute(conn)?;
                }
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        let tables = db
            .read(|conn| {
                Ok(
                    diesel::sql_query("SELECT name FROM sqlite_master WHERE name = 'filler'")
                        .execute(conn)?,
                )
            })
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn gss_encryption_is_off_unless_the_url_asks_for_it() {
        assert_eq!(
            without_gss_by_default("postgres://u@h/db"),
            "postgres://u@h/db?gssencmode=disable"
        );
        assert_eq!(
            without_gss_by_default("postgres://u@h/db?sslmode=require"),
            "postgres://u@h/db?sslmode=require&gssencmode=disable"
        );
        assert_eq!(
            without_gss_by_default("postgres://u@h/db?gssencmode=require"),
            "postgres://u@h/db?gssencmode=require"
        );
    }

    #[test]
    fn urls_select_the_backend_by_scheme() {
        let pg = DatabaseUrl::parse("postgres://u:secret@localhost:5432/db").unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert!(
            !pg.to_string().contains("secret"),
            "password must not be shown"
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db")
                .unwrap()
                .sqlite_path(),
            Some("data/x.db")
        );
        assert_eq!(
            DatabaseUrl::parse("fairseg.db").unwrap().backend(),
            Backend::Sqlite
        );
        assert!(DatabaseUrl::parse("mysql://localhost/x").is_err());
        assert!(DatabaseUrl::parse("  ").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }
}
