//! The scheduler's state: the next slot of each repository's schedules, the slots that fired
//! (with their jobs), and named leases so one process at a time runs the scheduler's tick.
//!
//! Exactly once: a slot fires in one transaction that moves `next_slot` forward with a
//! compare-and-swap on its old value, inserts the job, and records the slot under a primary
//! key. Two processes that both see the slot due race on the compare-and-swap; the loser
//! changes nothing. The lease only saves the losers the work of looking.

use super::{begin_write, with_pool, JobId, NewJob, Store, StoreError, UnixMillis};

/// What [`Store::fire_schedule`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// First seen (or its cron expression changed): armed for `next_slot`, nothing queued.
    Armed { next_slot: UnixMillis },
    /// Not due yet, or another process fired this slot first.
    NotDue { next_slot: UnixMillis },
    /// The slot `slot` fired: `job` is queued and the schedule waits for `next_slot`.
    Queued {
        slot: UnixMillis,
        job: JobId,
        next_slot: UnixMillis,
    },
}

/// One schedule as the tick sees it.
pub struct ScheduleSlot<'a> {
    pub repo: &'a str,
    pub name: &'a str,
    pub cron: &'a str,
    pub installation_id: i64,
}

impl Store {
    /// Takes or renews the lease `name` for `owner` until now + `ttl`; false when another
    /// owner holds it unexpired.
    pub async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let until = now.saturating_add(super::millis(ttl));
        let n = with_pool!(self, |pool, _| sqlx::query(
            "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at <= $4"
        )
        .bind(name)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Gives up the lease `name` if `owner` holds it (a process shutting down), so another
    /// process takes it at its next attempt instead of after the expiry.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<bool, StoreError> {
        let n = with_pool!(self, |pool, _| sqlx::query(
            "DELETE FROM leases WHERE name = $1 AND owner = $2"
        )
        .bind(name)
        .bind(owner)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Fires the schedule if its slot is due at `now` (the store's clock): queues `job`,
    /// records the slot, and arms the next one, `next_after(now)`. A schedule seen for the
    /// first time, or whose cron expression changed, is only armed.
    // long: one SQL transaction, written out in order so its locking is visible in one place.
    pub async fn fire_schedule(
        &self,
        s: &ScheduleSlot<'_>,
        next_after: impl Fn(UnixMillis) -> Option<UnixMillis>,
        job: NewJob,
    ) -> Result<Fired, StoreError> {
        let now = self.now();
        let Some(next) = next_after(now) else {
            return Err(StoreError::OutOfRange(format!(
                "schedule `{}` of {} never fires again",
                s.name, s.repo
            )));
        };
        let payload = serde_json::to_string(&job.payload)
            .map_err(|e| StoreError::OutOfRange(format!("job payload: {e}")))?;
        with_pool!(self, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await?;
            let row: Option<(String, i64)> = sqlx::query_as(
                "SELECT cron, next_slot FROM schedules WHERE repo = $1 AND name = $2",
            )
            .bind(s.repo)
            .bind(s.name)
            .fetch_optional(&mut *tx)
            .await?;
            let due = match row {
                Some((cron, slot)) if cron == s.cron => slot,
                _ => {
                    sqlx::query(
                        "INSERT INTO schedules (repo, name, cron, installation_id, next_slot) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repo, name) DO UPDATE SET \
                         cron = excluded.cron, installation_id = excluded.installation_id, \
                         next_slot = excluded.next_slot",
                    )
                    .bind(s.repo)
                    .bind(s.name)
                    .bind(s.cron)
                    .bind(s.installation_id)
                    .bind(next)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(Fired::Armed { next_slot: next });
                }
            };
            if due > now {
                tx.rollback().await?;
                return Ok(Fired::NotDue { next_slot: due });
            }
            // Compare-and-swap: only the transaction that still sees `due` moves it.
            let moved = sqlx::query(
                "UPDATE schedules SET next_slot = $4, installation_id = $5 \
                 WHERE repo = $1 AND name = $2 AND next_slot = $3",
            )
            .bind(s.repo)
            .bind(s.name)
            .bind(due)
            .bind(next)
            .bind(s.installation_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                tx.rollback().await?;
                return Ok(Fired::NotDue { next_slot: next });
            }
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO jobs (delivery_id, kind, repo, installation_id, payload, \
                 dedupe_key, thread, state, attempts, max_attempts, created_at, updated_at) \
                 VALUES (NULL, $1, $2, $3, $4, $5, $8, 'queued', 0, $6, $7, $7) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(&job.kind)
            .bind(&job.repo)
            .bind(job.installation_id)
            .bind(&payload)
            .bind(&job.dedupe_key)
            .bind(self.max_attempts)
            .bind(now)
            .bind(&job.thread)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                // The schedule's previous run is still queued or running (its dedupe key is
                // live): this slot is skipped rather than stacked behind it.
                tx.commit().await?;
                return Ok(Fired::NotDue { next_slot: next });
            };
            sqlx::query(
                "INSERT INTO schedule_runs (repo, name, slot, job_id, fired_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(s.repo)
            .bind(s.name)
            .bind(due)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Fired::Queued {
                slot: due,
                job: id,
                next_slot: next,
            })
        })
    }

    /// Forgets the schedules of `repo` not named in `keep` (removed from its config), so a
    /// schedule added again later is armed afresh rather than firing at once for the slots
    /// it had while it was gone. Their runs stay, for `/equitr cost`.
    pub async fn disarm_schedules_except(
        &self,
        repo: &str,
        keep: &[&str],
    ) -> Result<u64, StoreError> {
        let names: Vec<String> = with_pool!(self, |pool, _| sqlx::query_scalar(
            "SELECT name FROM schedules WHERE repo = $1"
        )
        .bind(repo)
        .fetch_all(pool)
        .await?);
        let mut removed = 0;
        for name in names.iter().filter(|n| !keep.contains(&n.as_str())) {
            removed += with_pool!(self, |pool, _| sqlx::query(
                "DELETE FROM schedules WHERE repo = $1 AND name = $2"
            )
            .bind(repo)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        }
        Ok(removed)
    }

    /// Each schedule's spend in a month (`YYYY-MM`) for a repository, by schedule name.
    pub async fn schedule_month_spend(
        &self,
        repo: &str,
        month: &str,
    ) -> Result<Vec<(String, crate::money::pricing::Usd)>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, |pool, _| sqlx::query_as(&format!(
            "SELECT r.name, CAST(COALESCE(SUM({}), 0) AS BIGINT) FROM schedule_runs r \
             JOIN ledger l ON l.job_id = r.job_id \
             WHERE r.repo = $1 AND l.month = $2 GROUP BY r.name ORDER BY r.name",
            super::ledger::SPENT
        ))
        .bind(repo)
        .bind(month)
        .fetch_all(pool)
        .await?);
        rows.into_iter()
            .map(|(name, picos)| Ok((name, super::picos_from_db(picos)?)))
            .collect()
    }
}
