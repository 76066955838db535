//! Claiming the next job, fairly across installations.
//!
//! One App serves many installations, and one of them (a busy monorepo, a comment storm) must
//! not starve the rest. A claim takes, in this order:
//!
//! 1. the oldest runnable job of an installation that has nothing running under a live lease;
//! 2. else, of the installations that do have jobs running but fewer than the
//!    per-installation cap, the one running the fewest, its oldest runnable job.
//!
//! An installation at its cap gets nothing until one of its jobs ends. So 10,000 queued jobs
//! of one installation and one job of another: the other's starts in the next free slot.
//! Both steps walk indexes in id order and stop at the first hit (step 2 once per busy
//! installation, of which there are at most as many as jobs running), so a deep queue costs
//! a claim little. The whole choice is under the claim lock — SQLite's write lock, or on
//! PostgreSQL an advisory lock held to the commit — so it is made on a consistent view.

use std::time::Duration;

use super::jobs::{JobRow, EXPIRE_RESERVATIONS, JOB_COLUMNS};
use super::{begin_write, millis, with_pool, ClaimedJob, Dialect, Store, StoreError};

/// What a runnable job is (`$1` is now): queued, or running with an expired lease and
/// attempts left; and not while another job of its thread runs with a live lease (two
/// triggers on one issue never work on one branch at once).
const RUNNABLE: &str = "(state = 'queued' OR (state = 'running' AND lease_expires_at <= $1 \
     AND attempts < max_attempts)) \
     AND (thread IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o \
     WHERE o.thread = jobs.thread AND o.state = 'running' \
     AND o.lease_expires_at > $1 AND o.id <> jobs.id))";

/// The most busy installations named in one statement (past it, step 1 is skipped and step 2
/// decides).
const MAX_BUSY: usize = 5_000;

impl Store {
    /// Claims the next runnable job for `worker_id` until now + `lease`, counting an attempt,
    /// with no per-installation cap (see [`Store::claim_fair`]).
    pub async fn claim(
        &self,
        worker_id: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        self.claim_fair(worker_id, lease, None).await
    }

    /// Claims the next job fairly across installations (see the module docs), never one of
    /// an installation that already runs `per_installation` jobs.
    // long: one transaction: the busy installations, the two steps, the update.
    pub async fn claim_fair(
        &self,
        worker_id: &str,
        lease: Duration,
        per_installation: Option<u32>,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let now = self.now();
        let expires = now.saturating_add(millis(lease));
        let cap = per_installation.map(|c| i64::from(c.max(1)));
        with_pool!(self, |pool, dialect| {
            let lock_row = match dialect {
                // Other claimers skip a row this one locked instead of waiting for it.
                Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
                Dialect::Sqlite => "",
            };
            let mut tx = begin_write(pool, dialect).await?;
            if let Dialect::Postgres = dialect {
                // Claims take turns (held to the commit): a claimer must see the job another
                // has just started. SQLite's write lock does this already.
                sqlx::query("SELECT pg_advisory_xact_lock(7291001)")
                    .execute(&mut *tx)
                    .await?;
            }
            let mut busy: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT installation_id, COUNT(*) FROM jobs \
                 WHERE state = 'running' AND lease_expires_at > $1 GROUP BY installation_id",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut chosen: Option<i64> = None;
            if busy.len() <= MAX_BUSY {
                let others = super::placeholders(2, busy.len());
                let not_busy = if busy.is_empty() {
                    String::new()
                } else {
                    format!(" AND installation_id NOT IN ({others})")
                };
                let sql = format!(
                    "SELECT id FROM jobs WHERE {RUNNABLE}{not_busy} ORDER BY id LIMIT 1{lock_row}"
                );
                let mut q = sqlx::query_as::<_, (i64,)>(&sql).bind(now);
                for (inst, _) in &busy {
                    q = q.bind(*inst);
                }
                chosen = q.fetch_optional(&mut *tx).await?.map(|r| r.0);
            }
            if chosen.is_none() {
                // The fewest running first; among equals, the oldest job.
                busy.retain(|(_, n)| cap.map_or(true, |c| *n < c));
                busy.sort_by_key(|(_, n)| *n);
                let sql = format!(
                    "SELECT id FROM jobs WHERE {RUNNABLE} AND installation_id = $2 \
                     ORDER BY id LIMIT 1{lock_row}"
                );
                let mut best: Option<(i64, i64)> = None;
                for (inst, n) in &busy {
                    if best.is_some_and(|(bn, _)| bn < *n) {
                        break;
                    }
                    let found: Option<(i64,)> = sqlx::query_as(&sql)
                        .bind(now)
                        .bind(*inst)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some((id,)) = found {
                        if best.map_or(true, |(_, b)| id < b) {
                            best = Some((*n, id));
                        }
                    }
                }
                chosen = best.map(|(_, id)| id);
            }
            let Some(id) = chosen else {
                tx.rollback().await?;
                return Ok(None);
            };
            let row: Option<JobRow> = sqlx::query_as(&format!(
                "UPDATE jobs SET state = 'running', lease_owner = $2, lease_expires_at = $3, \
                 attempts = attempts + 1, updated_at = $1, claimed_at = $1 WHERE id = $4 \
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(now)
            .bind(worker_id)
            .bind(expires)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            sqlx::query(EXPIRE_RESERVATIONS)
                .bind(row.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            row.into_claimed().map(Some)
        })
    }
}

impl Store {
    /// On PostgreSQL, calls `wake` whenever any process sharing the database queues a job
    /// (intake's `pg_notify` at its commit), reconnecting as needed, until the process ends;
    /// the workers' poll stays as the fallback. On SQLite (one process) nothing: intake wakes
    /// the workers itself.
    pub fn listen_for_jobs(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        let super::Pool::Postgres(pool) = &self.pool else {
            return;
        };
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen("equitr_jobs").await?;
                    loop {
                        l.recv().await?;
                        wake.notify_waiters();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                if let Err(e) = listener.await {
                    tracing::warn!(error = %e, "lost the job notifications; polling until they are back");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

impl Store {
    /// How long each of the newest `n` claimed jobs waited between its commit and its latest
    /// claim, in milliseconds, newest first.
    pub async fn queue_waits(&self, n: i64) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = with_pool!(self, |pool, _| sqlx::query_as(
            "SELECT claimed_at - created_at FROM jobs WHERE claimed_at IS NOT NULL \
             ORDER BY id DESC LIMIT $1"
        )
        .bind(n)
        .fetch_all(pool)
        .await?);
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
