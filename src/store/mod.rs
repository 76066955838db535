//! The durable store of `equitr-coder serve`: webhook deliveries, the job queue with leases,
//! the budget ledger and job transcripts, on SQLite (the embedded default) or PostgreSQL
//! (several replicas sharing one database). DESIGN §7.
//!
//! **Why an enum over `SqlitePool`/`PgPool` and not sqlx's `Any` driver.** The two dialects
//! differ exactly where correctness lives: claiming a job (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, one `UPDATE … RETURNING` under SQLite's single write lock), serialising ledger
//! reservations (`pg_advisory_xact_lock` versus `BEGIN IMMEDIATE`) and connection set-up (WAL,
//! busy timeout, foreign keys are SQLite connect options the `Any` driver does not expose).
//! With native pools each of those is explicit, types decode natively, and the [`with_pool!`]
//! macro keeps the SQL that *is* shared written once: SQLite accepts PostgreSQL's `$N`
//! placeholders, so most statements are the same text for both.
//!
//! Times are Unix milliseconds from an injectable [`Clock`], so tests move time instead of
//! sleeping; money is `i64` picodollars in the database (range-checked against [`Usd`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection;

use crate::money::pricing::Usd;

mod claim;
pub mod dashboard;
mod estimates;
mod intake;
mod jobs;
mod ledger;
mod prune;
mod schedules;

pub use intake::NewDelivery;
pub use jobs::{
    ClaimedJob, DeliveryOutcome, ExhaustedJob, Job, JobCount, JobEvent, JobId, JobState, NewJob,
};
pub use ledger::{month_of, LedgerScope, Spend, SqlLedger};
pub use prune::{Pruned, Retention, Storage};
pub use schedules::{Fired, ScheduleSlot};

pub use crate::clock::{Clock, ManualClock, SystemClock, UnixMillis};

/// A duration in whole milliseconds, saturating: a lease of 300 million years is "forever".
/// `$first, $first+1, …`: `n` numbered bind parameters for an `IN (…)` list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many times a job may be claimed before an expired lease fails it for good.
    pub max_attempts: u32,
    pub clock: Arc<dyn Clock>,
    /// Pool size; `None` picks a default per dialect.
    pub max_connections: Option<u32>,
    /// How long to wait for a connection from the pool, and on SQLite for the write lock,
    /// before failing (the webhook then answers 503 rather than hanging).
    pub timeout: Duration,
    /// SQLite only: `synchronous=FULL` (the default) makes every commit survive power loss;
    /// `false` selects `NORMAL`, which in WAL mode still survives a crash or `kill -9` of the
    /// process but may lose the last commits on an OS crash or power cut — much faster.
    pub sqlite_sync_full: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_attempts: 3,
            clock: Arc::new(SystemClock),
            max_connections: None,
            timeout: Duration::from_secs(5),
            sqlite_sync_full: true,
        }
    }
}

/// Errors of the store. Messages are one line and never contain the database password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL {url}: {detail}")]
    InvalidUrl { url: String, detail: String },
    #[error("could not connect to the database at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("could not apply the database migrations: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Database(String),
    /// A value that does not fit the database (or a row that does not fit the program).
    #[error("value out of range: {0}")]
    OutOfRange(String),
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(one_line(&e.to_string()))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the native pool and `$dialect` to its [`Dialect`]; the
/// body is type-checked once per driver, so shared SQL is written once.
macro_rules! with_pool {
    ($store:expr, |$pool:ident, $dialect:pat_param| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                let $dialect = $crate::store::Dialect::Sqlite;
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                let $dialect = $crate::store::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Begins a transaction that will write. On SQLite `BEGIN IMMEDIATE` takes the write lock up
/// front (waiting up to the busy timeout), so a read-then-write transaction can neither see a
/// stale snapshot nor fail to upgrade; PostgreSQL's default `BEGIN` is right there, and the
/// callers that need more take row or advisory locks.
pub(crate) async fn begin_write<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    match dialect {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => pool.begin().await,
    }
}

/// A connection taken from the pool and kept by its taker (the intake writer).
#[derive(Debug)]
pub(crate) enum Held {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Held {
    /// Closes the connection when dropped instead of returning it to the pool.
    pub(crate) fn close_on_drop(mut self) {
        match &mut self {
            Held::Sqlite(c) => c.close_on_drop(),
            Held::Postgres(c) => c.close_on_drop(),
        }
    }
}

/// [`with_pool!`] for a [`Held`] connection: `$conn` is the dialect's `PoolConnection`.
macro_rules! with_held {
    ($held:expr, |$conn:ident, $dialect:pat_param| $body:expr) => {
        match $held {
            $crate::store::Held::Sqlite($conn) => {
                let $dialect = $crate::store::Dialect::Sqlite;
                $body
            }
            $crate::store::Held::Postgres($conn) => {
                let $dialect = $crate::store::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use with_held;

/// [`begin_write`] on a connection of one's own.
pub(crate) async fn begin_write_on<DB: sqlx::Database>(
    conn: &mut sqlx::pool::PoolConnection<DB>,
    dialect: Dialect,
) -> Result<sqlx::Transaction<'_, DB>, sqlx::Error> {
    match dialect {
        Dialect::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => conn.begin().await,
    }
}

/// The store. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_attempts: i64,
    /// The group-commit writer of [`Store::record_delivery`]; `None` in the writer's own copy.
    pub(crate) intake: Option<Arc<intake::Intake>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connects with default options; see [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// Connects to `sqlite://path` (created if missing; WAL, busy timeout, foreign keys on) or
    /// `postgres://…`/`postgresql://…`, then applies the migrations of that dialect.
    pub async fn connect_with(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        let bad_url = |detail: String| StoreError::InvalidUrl {
            url: shown.clone(),
            detail: scrub(&detail, url),
        };
        let connect_failed = |e: sqlx::Error| StoreError::Connect {
            url: shown.clone(),
            detail: scrub(&e.to_string(), url),
        };
        if opts.max_attempts == 0 {
            return Err(StoreError::OutOfRange(
                "max_attempts must be at least 1".into(),
            ));
        }
        let pool = if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad_url(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(opts.timeout)
                .foreign_keys(true)
                .synchronous(if opts.sqlite_sync_full {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                });
            let mut pool = SqlitePoolOptions::new().acquire_timeout(opts.timeout);
            pool = if memory {
                // Every connection to `:memory:` is its own empty database: keep exactly one,
                // forever.
                pool.max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                pool.max_connections(opts.max_connections.unwrap_or(8))
            };
            let pool = pool.connect_with(connect).await.map_err(connect_failed)?;
            SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate(one_line(&scrub(&e.to_string(), url))))?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url).map_err(|e| bad_url(e.to_string()))?;
            // One direct connection first: when the server is down or refuses the login the
            // pool only says it timed out, and the operator needs the cause.
            match tokio::time::timeout(opts.timeout, PgConnection::connect_with(&connect)).await {
                Ok(Ok(conn)) => {
                    // Failing to say goodbye to a server we are about to reconnect to is moot.
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => return Err(connect_failed(e)),
                Err(_) => return Err(connect_failed(sqlx::Error::PoolTimedOut)),
            }
            let pool = PgPoolOptions::new()
                .acquire_timeout(opts.timeout)
                .max_connections(opts.max_connections.unwrap_or(10))
                .connect_with(connect)
                .await
                .map_err(connect_failed)?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate(one_line(&scrub(&e.to_string(), url))))?;
            Pool::Postgres(pool)
        } else {
            return Err(bad_url(
                "expected sqlite://path or postgres://user@host/database".into(),
            ));
        };
        let mut store = Store {
            pool,
            clock: opts.clock,
            max_attempts: i64::from(opts.max_attempts),
            intake: None,
        };
        store.intake = Some(Arc::new(intake::Intake::start(store.clone())));
        Ok(store)
    }

    /// A round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool, _| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`, for logs and metrics labels.
    pub fn dialect(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections in use to come back (the intake writer's
    /// too: it is told to let go of it).
    pub async fn close(&self) {
        if let Some(intake) = &self.intake {
            intake.release();
        }
        with_pool!(self, |pool, _| pool.close().await)
    }

    /// A connection of the pool, kept until the [`Held`] is dropped.
    pub(crate) async fn acquire(&self) -> Result<Held, StoreError> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => Held::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => Held::Postgres(p.acquire().await?),
        })
    }

    /// The pool's size.
    pub(crate) fn max_connections(&self) -> u32 {
        with_pool!(self, |pool, _| pool.options().get_max_connections())
    }

    pub(crate) fn now(&self) -> UnixMillis {
        self.clock.now()
    }
}

/// `url` with any password replaced by `***`: the userinfo password and a `password=` query
/// parameter (PostgreSQL URLs accept both).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    // Replace from the right so that earlier ranges stay valid.
    let mut ranges = password_ranges(url);
    ranges.sort_by_key(|r| std::cmp::Reverse(r.start));
    for r in ranges {
        out.replace_range(r, "***");
    }
    out
}

/// Byte ranges of the passwords in `url`.
pub fn password_ranges(url: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = url[auth_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| auth_start + i);
        // The last '@' ends the userinfo (an '@' in a password should be percent-encoded, but
        // be generous).
        if let Some(at) = url[auth_start..auth_end].rfind('@') {
            if let Some(colon) = url[auth_start..auth_start + at].find(':') {
                found.push(auth_start + colon + 1..auth_start + at);
            }
        }
    }
    if let Some(q) = url.find('?') {
        let mut pos = q + 1;
        for kv in url[q + 1..].split(['&', '#']) {
            if let Some((k, v)) = kv.split_once('=') {
                if k.eq_ignore_ascii_case("password") {
                    let from = pos + k.len() + 1;
                    found.push(from..from + v.len());
                }
            }
            pos += kv.len() + 1;
        }
    }
    found.retain(|r| !r.is_empty());
    found
}

/// Removes the URL's passwords from a driver message, in case a driver ever echoes them, and
/// folds it onto one line.
fn scrub(message: &str, url: &str) -> String {
    let mut m = message.replace(url, &redact_url(url));
    for r in password_ranges(url) {
        m = m.replace(&url[r], "***");
    }
    one_line(&m)
}

/// `Usd` → the database's `i64`.
pub(crate) fn picos_to_db(amount: Usd) -> Result<i64, StoreError> {
    i64::try_from(amount.picos()).map_err(|_| {
        StoreError::OutOfRange(format!(
            "{} picodollars does not fit the ledger",
            amount.picos()
        ))
    })
}

/// The database's `i64` → `Usd`; a negative amount is a corrupt row.
pub(crate) fn picos_from_db(picos: i64) -> Result<Usd, StoreError> {
    u64::try_from(picos)
        .map(Usd::from_picos)
        .map_err(|_| StoreError::Corrupt(format!("negative amount {picos} in the ledger")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://equitr:s3cret@db:5432/x"),
            "postgres://equitr:***@db:5432/x"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=u&password=p4ss&sslmode=require"),
            "postgres://db/x?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_url("sqlite://equitr.db"), "sqlite://equitr.db");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        let m = scrub(
            "bad password s3cret\nfor postgres://equitr:s3cret@db/x",
            "postgres://equitr:s3cret@db/x",
        );
        assert_eq!(m, "bad password *** for postgres://equitr:***@db/x");
    }
}
