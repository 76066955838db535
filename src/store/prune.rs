//! Retention: what the store keeps, and for how long.
//!
//! - **Deliveries** (the ids that make a redelivery idempotent) for the redelivery window:
//!   GitHub redelivers up to 3 days back on github.com and 7 on GHES, so 8 days by default.
//!   Their jobs stay; they just stop naming the delivery.
//! - **Finished jobs** for the job retention (90 days by default): then their transcript (job
//!   events) is deleted, and the job row too unless ledger rows of a month still reported
//!   point at it — then only its payload is emptied, and the row goes with its ledger rows.
//! - **The ledger** for the months that are reported (13 by default: this month and the
//!   twelve before it), and its daily roll-up with it. A reservation still open is never
//!   deleted: budgets count it.
//!
//! Each class is deleted in batches of [`Retention::batch`] rows, one short transaction each
//! with a pause between them, so intake's writer — which waits for SQLite's write lock — is
//! never held up for long. Queued and running jobs are never touched.

use std::time::Duration;

use super::{begin_write, placeholders as params, with_pool, Store, StoreError, UnixMillis};

/// How long each class of rows is kept; `None`: forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub deliveries: Option<Duration>,
    pub jobs: Option<Duration>,
    /// Whole months, counting the current one.
    pub ledger_months: Option<u32>,
    /// Rows per transaction.
    pub batch: i64,
    /// The pause between two batches.
    pub pause: Duration,
    /// A pass stops after this long (its [`Pruned::more`] says so), well inside the pruner's
    /// lease, which is renewed before the next pass.
    pub pass_budget: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            deliveries: Some(Duration::from_secs(8 * 86_400)),
            jobs: Some(Duration::from_secs(90 * 86_400)),
            ledger_months: Some(13),
            batch: 500,
            pause: Duration::from_millis(5),
            pass_budget: Duration::from_secs(240),
        }
    }
}

/// What one [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    /// Job rows deleted.
    pub jobs: u64,
    /// Job rows kept for their ledger rows, with their payload emptied.
    pub jobs_emptied: u64,
    pub job_events: u64,
    pub ledger: u64,
    /// The pass ran out of its time budget with rows left to delete.
    pub more: bool,
}

/// The size of the store, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// `(table, rows)`.
    pub rows: Vec<(&'static str, i64)>,
    /// The database's size on disk (SQLite: the file's pages in use, WAL excluded).
    pub bytes: i64,
}

/// The tables that grow with use.
const TABLES: [&str; 7] = [
    "deliveries",
    "jobs",
    "job_events",
    "ledger",
    "ledger_days",
    "estimates",
    "schedule_runs",
];

/// The first month kept when `months` are kept at `now`, as `YYYY-MM`, and its first day
/// (days since 1970).
fn first_month_kept(now: UnixMillis, months: u32) -> (String, i64) {
    use chrono::{Datelike, NaiveDate};
    let today = chrono::DateTime::from_timestamp_millis(now)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    let index =
        i64::from(today.year()) * 12 + i64::from(today.month0()) - i64::from(months.max(1)) + 1;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let first = i32::try_from(year)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, u32::try_from(month0 + 1).ok()?, 1))
        .unwrap_or(NaiveDate::MIN);
    let day = first
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
        .num_days();
    (format!("{:04}-{:02}", first.year(), first.month()), day)
}

/// One class of rows to prune, with its bound.
enum Step {
    /// Deliveries received before this time.
    Deliveries(UnixMillis),
    /// Jobs finished before this time.
    Jobs(UnixMillis),
    /// Ledger rows of months before this `YYYY-MM`, and roll-up days before this day.
    Ledger(String, i64),
}

/// Rows in one `DELETE` of a job's transcript events: a job may have thousands.
const EVENTS_PER_TRANSACTION: i64 = 500;

/// Runs `sql` on `tx` with `ids` bound as `$1…`; the rows it changed.
macro_rules! exec_ids {
    ($tx:ident, $sql:expr, $ids:expr) => {{
        let sql = $sql;
        let mut q = sqlx::query(&sql);
        for id in $ids {
            q = q.bind(id.clone());
        }
        q.execute(&mut *$tx).await?.rows_affected()
    }};
}

impl Store {
    /// Deletes what `r` no longer keeps, batch by batch, until nothing is left to delete or
    /// the pass's time budget is spent.
    pub async fn prune(&self, r: &Retention) -> Result<Pruned, StoreError> {
        let now = self.now();
        let batch = r.batch.max(1);
        let cutoff = |keep: Duration| now.saturating_sub(super::millis(keep));
        let steps = [
            r.deliveries.map(|keep| Step::Deliveries(cutoff(keep))),
            r.jobs.map(|keep| Step::Jobs(cutoff(keep))),
            r.ledger_months.map(|months| {
                let (month, day) = first_month_kept(now, months);
                Step::Ledger(month, day)
            }),
        ];
        let started = std::time::Instant::now();
        let mut done = Pruned::default();
        for step in steps.iter().flatten() {
            // A full batch: there may be more, after a pause or, once the time is up, in
            // the next pass.
            while self.prune_step(step, batch, now, &mut done).await? >= batch as u64 {
                if started.elapsed() > r.pass_budget {
                    done.more = true;
                    return Ok(done);
                }
                tokio::time::sleep(r.pause).await;
            }
        }
        Ok(done)
    }

    /// One batch of `step`, counted in `done`; how many rows the batch took.
    async fn prune_step(
        &self,
        step: &Step,
        batch: i64,
        now: UnixMillis,
        done: &mut Pruned,
    ) -> Result<u64, StoreError> {
        Ok(match step {
            Step::Deliveries(cutoff) => {
                let n = self.prune_deliveries(*cutoff, batch).await?;
                done.deliveries += n;
                n
            }
            Step::Jobs(cutoff) => {
                let (ids, deleted, events) = self.prune_jobs(*cutoff, batch, now).await?;
                done.jobs += deleted;
                done.jobs_emptied += ids - deleted;
                done.job_events += events;
                ids
            }
            Step::Ledger(month, day) => {
                let (rows, jobs) = self.prune_ledger(month, *day, batch).await?;
                done.ledger += rows;
                done.jobs += jobs;
                rows
            }
        })
    }

    /// One batch of deliveries received before `cutoff`: their jobs stop naming them. The
    /// batch is chosen once, so both statements act on the same rows.
    async fn prune_deliveries(&self, cutoff: UnixMillis, batch: i64) -> Result<u64, StoreError> {
        with_pool!(self, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await?;
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT delivery_id FROM deliveries WHERE received_at < $1 \
                 ORDER BY received_at, delivery_id LIMIT $2",
            )
            .bind(cutoff)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                return Ok(0);
            }
            let list = params(1, ids.len());
            exec_ids!(
                tx,
                format!("UPDATE jobs SET delivery_id = NULL WHERE delivery_id IN ({list})"),
                ids.iter()
            );
            let n = exec_ids!(
                tx,
                format!("DELETE FROM deliveries WHERE delivery_id IN ({list})"),
                ids.iter()
            );
            tx.commit().await?;
            Ok(n)
        })
    }

    /// One batch of jobs finished before `cutoff` and not pruned yet: (jobs in the batch, job
    /// rows deleted, job events deleted). Their transcripts first, in transactions of their
    /// own, then the rows in one.
    // long: the SQL of each transaction written out in order, so its locking is visible.
    async fn prune_jobs(
        &self,
        cutoff: UnixMillis,
        batch: i64,
        now: UnixMillis,
    ) -> Result<(u64, u64, u64), StoreError> {
        with_pool!(self, |pool, dialect| {
            // A finished job does not change: choosing the batch needs no write lock.
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND pruned_at IS NULL \
                 AND finished_at < $1 AND state IN ('succeeded', 'failed') \
                 ORDER BY finished_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(batch)
            .fetch_all(pool)
            .await?;
            if ids.is_empty() {
                return Ok((0, 0, 0));
            }
            let list = params(1, ids.len());
            // A few hundred events per transaction: one job may have thousands, and intake
            // waits for the write lock meanwhile.
            let mut events = 0;
            loop {
                let mut tx = begin_write(pool, dialect).await?;
                let n = exec_ids!(
                    tx,
                    format!(
                        "DELETE FROM job_events WHERE id IN (SELECT id FROM job_events \
                         WHERE job_id IN ({list}) LIMIT {EVENTS_PER_TRANSACTION})"
                    ),
                    &ids
                );
                tx.commit().await?;
                events += n;
                if n < EVENTS_PER_TRANSACTION as u64 {
                    break;
                }
            }
            let mut tx = begin_write(pool, dialect).await?;
            for table in ["estimates", "schedule_runs"] {
                exec_ids!(
                    tx,
                    format!(
                        "DELETE FROM {table} WHERE job_id IN ({list}) AND NOT EXISTS \
                         (SELECT 1 FROM ledger l WHERE l.job_id = {table}.job_id)"
                    ),
                    &ids
                );
            }
            let deleted = exec_ids!(
                tx,
                format!(
                    "DELETE FROM jobs WHERE id IN ({list}) AND NOT EXISTS \
                     (SELECT 1 FROM ledger l WHERE l.job_id = jobs.id)"
                ),
                &ids
            );
            let mut emptied = ids.clone();
            emptied.push(now);
            let n = emptied.len();
            exec_ids!(
                tx,
                format!("UPDATE jobs SET payload = '{{}}', pruned_at = ${n} WHERE id IN ({list})"),
                &emptied
            );
            tx.commit().await?;
            Ok((ids.len() as u64, deleted, events))
        })
    }

    /// One batch of ledger rows of months before `month` (settled, released or expired), the
    /// daily roll-up before `day`, and the emptied jobs that no ledger row points at now:
    /// (ledger rows deleted, job rows deleted).
    async fn prune_ledger(
        &self,
        month: &str,
        day: i64,
        batch: i64,
    ) -> Result<(u64, u64), StoreError> {
        with_pool!(self, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await?;
            let mut jobs: Vec<i64> = sqlx::query_scalar(
                // A row of an old month that settled on a kept day waits for its day (the
                // roll-up of kept days stays whole), and a job still queued or running keeps
                // its rows (its per-run cap counts every month's).
                "DELETE FROM ledger WHERE id IN (SELECT id FROM ledger WHERE month < $1 \
                 AND state <> 'reserved' AND COALESCE(settled_at, created_at) < $3 \
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = ledger.job_id \
                 AND j.finished_at IS NULL) ORDER BY month LIMIT $2) RETURNING job_id",
            )
            .bind(month)
            .bind(batch)
            .bind(day.saturating_mul(86_400_000))
            .fetch_all(&mut *tx)
            .await?;
            let rows = jobs.len() as u64;
            jobs.sort_unstable();
            jobs.dedup();
            sqlx::query("DELETE FROM ledger_days WHERE day < $1")
                .bind(day)
                .execute(&mut *tx)
                .await?;
            let mut deleted = 0;
            if !jobs.is_empty() {
                // The emptied jobs (pruned already) that no ledger row points at now.
                let list = params(1, jobs.len());
                let gone = "NOT EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id) \
                            AND j.pruned_at IS NOT NULL";
                for table in ["estimates", "schedule_runs"] {
                    exec_ids!(
                        tx,
                        format!(
                            "DELETE FROM {table} WHERE job_id IN (SELECT j.id FROM jobs j \
                             WHERE j.id IN ({list}) AND {gone})"
                        ),
                        &jobs
                    );
                }
                deleted = exec_ids!(
                    tx,
                    format!("DELETE FROM jobs AS j WHERE j.id IN ({list}) AND {gone}"),
                    &jobs
                );
            }
            tx.commit().await?;
            Ok((rows, deleted))
        })
    }

    /// Rows per growing table and the database's size.
    pub async fn storage(&self) -> Result<Storage, StoreError> {
        let counts = TABLES
            .iter()
            .map(|t| format!("(SELECT COUNT(*) FROM {t})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {counts}");
        with_pool!(self, |pool, dialect| {
            let row = sqlx::query(&sql).fetch_one(pool).await?;
            let mut rows = Vec::with_capacity(TABLES.len());
            for (i, t) in TABLES.iter().enumerate() {
                rows.push((*t, sqlx::Row::try_get::<i64, _>(&row, i)?));
            }
            let bytes: i64 = match dialect {
                super::Dialect::Sqlite => {
                    sqlx::query_scalar(
                        "SELECT (p.page_count - f.freelist_count) * s.page_size \
                         FROM pragma_page_count() p, pragma_freelist_count() f, \
                         pragma_page_size() s",
                    )
                    .fetch_one(pool)
                    .await?
                }
                super::Dialect::Postgres => {
                    sqlx::query_scalar("SELECT pg_database_size(current_database())")
                        .fetch_one(pool)
                        .await?
                }
            };
            Ok(Storage { rows, bytes })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::first_month_kept;

    #[test]
    fn the_first_month_kept_counts_the_current_one() {
        // 2026-12-04.
        let now = 1_796_342_400_000;
        assert_eq!(first_month_kept(now, 13).0, "2025-12");
        assert_eq!(first_month_kept(now, 1).0, "2026-12");
        assert_eq!(first_month_kept(now, 12).0, "2026-01");
        assert_eq!(first_month_kept(now, 24).0, "2025-01");
        assert_eq!(first_month_kept(now, 25).0, "2024-12");
        // 2025-12-01 is day 20423.
        assert_eq!(first_month_kept(now, 13).1, 20_423);
    }
}
