//! Deliveries, the job queue with leases, and job events.
//!
//! **Leases.** A worker claims a job for a lease; it heartbeats to extend it and finishes with
//! `complete`, `fail` or `release`, each of which only takes effect while the worker still owns
//! the job (`state = 'running' AND lease_owner = worker`). Ownership changes only when another
//! worker claims the job after the lease expired, so a worker whose process stalled past its
//! lease learns it from a `false` and must stop. Worker ids must be unique per process run.
//! A lease that expired but that nobody has re-claimed yet is still its owner's to extend.
//!
//! **Attempts.** Every claim counts an attempt; `release` (graceful shutdown) gives it back.
//! A running job whose lease expired is claimed again while `attempts < max_attempts`;
//! otherwise [`Store::take_exhausted`] fails it with "lease expired N times" and hands it to
//! exactly one caller, which posts the failure. That hand-over is at most once: a crash between
//! `take_exhausted` and the post loses the post (the job's events still record the failure).
//!
//! **Orphaned reservations.** Claiming a job, failing an exhausted one, and completing or
//! failing it turn that job's ledger rows still `reserved` into `expired`: counted at their
//! reserved amount for good (the call may have been billed). At those moments no live worker
//! legitimately holds a reservation of the job; a stalled old owner that settles later still
//! replaces the expired amount by the real cost.

use std::time::Duration;

use serde_json::Value;

use super::{begin_write, millis, with_pool, Store, StoreError, UnixMillis};

pub type JobId = i64;

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub repo: String,
    pub installation_id: i64,
    pub payload: Value,
    /// At most one queued or running job per key: a second one is not inserted (reported in
    /// [`DeliveryOutcome::New::deduplicated`]). Finished jobs free their key.
    pub dedupe_key: Option<String>,
    /// The issue or pull request (`owner/repo#12`) or branch it works on: jobs of one thread
    /// run one at a time, in order, across processes.
    pub thread: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The delivery was recorded with these jobs, in the order given.
    New {
        job_ids: Vec<JobId>,
        /// Dedupe keys of jobs not inserted because a live job already had the key.
        deduplicated: Vec<String>,
    },
    /// This delivery id was recorded before: nothing was inserted.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<JobState, StoreError> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {s:?}")))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub delivery_id: Option<String>,
    pub kind: String,
    pub repo: String,
    pub installation_id: i64,
    pub payload: Value,
    pub dedupe_key: Option<String>,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<UnixMillis>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
}

/// A job this worker now holds the lease of.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: JobId,
    pub delivery_id: Option<String>,
    pub kind: String,
    pub repo: String,
    pub installation_id: i64,
    pub payload: Value,
    /// 1 for the first run; above 1 the job was interrupted before (it should look for the
    /// side effects of earlier attempts: its PR, its comments).
    pub attempt: i64,
    pub max_attempts: i64,
    pub lease_expires_at: UnixMillis,
    /// The worker that claimed it (the lease's owner).
    pub lease_owner: String,
}

/// A job that [`Store::take_exhausted`] just failed; the caller reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExhaustedJob {
    pub id: JobId,
    pub kind: String,
    pub repo: String,
    pub installation_id: i64,
    pub payload: Value,
    pub attempts: i64,
    /// "lease expired N times".
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    pub kind: String,
    pub state: JobState,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub id: i64,
    pub job_id: JobId,
    pub kind: String,
    pub data: Value,
    pub created_at: UnixMillis,
}

#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    pub(super) id: i64,
    delivery_id: Option<String>,
    kind: String,
    repo: String,
    installation_id: i64,
    payload: String,
    dedupe_key: Option<String>,
    state: String,
    attempts: i64,
    max_attempts: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    result: Option<String>,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

pub(super) const JOB_COLUMNS: &str =
    "id, delivery_id, kind, repo, installation_id, payload, dedupe_key, \
     state, attempts, max_attempts, lease_owner, lease_expires_at, result, error, created_at, \
     updated_at, finished_at";

fn parse_json(what: &str, id: i64, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} of job {id} is not JSON: {e}")))
}

impl JobRow {
    fn into_job(self) -> Result<Job, StoreError> {
        Ok(Job {
            payload: parse_json("payload", self.id, &self.payload)?,
            result: self
                .result
                .as_deref()
                .map(|r| parse_json("result", self.id, r))
                .transpose()?,
            state: JobState::parse(&self.state)?,
            id: self.id,
            delivery_id: self.delivery_id,
            kind: self.kind,
            repo: self.repo,
            installation_id: self.installation_id,
            dedupe_key: self.dedupe_key,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        })
    }

    pub(super) fn into_claimed(self) -> Result<ClaimedJob, StoreError> {
        let job = self.into_job()?;
        Ok(ClaimedJob {
            id: job.id,
            delivery_id: job.delivery_id,
            kind: job.kind,
            repo: job.repo,
            installation_id: job.installation_id,
            payload: job.payload,
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            // Set by the claim that returned this row.
            lease_expires_at: job.lease_expires_at.unwrap_or_default(),
            lease_owner: job.lease_owner.unwrap_or_default(),
        })
    }
}

/// Marks the job's outstanding reservations as orphaned (see the module docs).
pub(super) const EXPIRE_RESERVATIONS: &str =
    "UPDATE ledger SET state = 'expired', cost_picos = reserved_picos, \
     settled_at = $2 WHERE job_id = $1 AND state = 'reserved'";

impl Store {
    /// Extends the lease to now + `lease` if `worker_id` still owns the job. `false`: the
    /// lease was lost (another worker has the job, or it finished) and the worker must stop.
    pub async fn heartbeat(
        &self,
        job_id: JobId,
        worker_id: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let n = with_pool!(self, |pool, _| sqlx::query(
            "UPDATE jobs SET lease_expires_at = $3, updated_at = $4 \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2"
        )
        .bind(job_id)
        .bind(worker_id)
        .bind(now.saturating_add(millis(lease)))
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Whether `worker_id` still holds job `job_id`'s unexpired lease: checked right before
    /// the job writes to the repository, so a process that stalled past its lease (and whose
    /// job another process has taken over) does not push as well.
    pub async fn holds_lease(&self, job_id: JobId, worker_id: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let n: i64 = with_pool!(self, |pool, _| sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE id = $1 AND state = 'running' \
             AND lease_owner = $2 AND lease_expires_at > $3"
        )
        .bind(job_id)
        .bind(worker_id)
        .bind(now)
        .fetch_one(pool)
        .await?);
        Ok(n == 1)
    }

    /// What a delivery's job turned out to be once its repository's config was read
    /// (`implement`, `review`, …; it is queued as `event`), for `/metrics` and the record.
    pub async fn set_job_kind(
        &self,
        job_id: JobId,
        worker_id: &str,
        kind: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let n = with_pool!(self, |pool, _| sqlx::query(
            "UPDATE jobs SET kind = $3, updated_at = $4 \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2"
        )
        .bind(job_id)
        .bind(worker_id)
        .bind(kind)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// The job succeeded. `false` if the worker no longer owns it (nothing is changed).
    pub async fn complete(
        &self,
        job_id: JobId,
        worker_id: &str,
        result: Value,
    ) -> Result<bool, StoreError> {
        let result = serde_json::to_string(&result)
            .map_err(|e| StoreError::OutOfRange(format!("job result: {e}")))?;
        let result = scrubbed_json(&result);
        self.finish(job_id, worker_id, "succeeded", Some(result), None)
            .await
    }

    /// The job failed for good (the worker decided so). `false` if it no longer owns it.
    pub async fn fail(
        &self,
        job_id: JobId,
        worker_id: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let error = crate::scrub::scrub(error);
        self.finish(job_id, worker_id, "failed", None, Some(&error))
            .await
    }

    async fn finish(
        &self,
        job_id: JobId,
        worker_id: &str,
        state: &str,
        result: Option<String>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        with_pool!(self, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await?;
            let n = sqlx::query(
                "UPDATE jobs SET state = $3, result = $4, error = $5, lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = $6, finished_at = $6 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2",
            )
            .bind(job_id)
            .bind(worker_id)
            .bind(state)
            .bind(result)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(EXPIRE_RESERVATIONS)
                    .bind(job_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    /// Graceful shutdown: puts the job back in the queue without counting the attempt.
    /// `false` if the worker no longer owns it.
    pub async fn release(&self, job_id: JobId, worker_id: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let n = with_pool!(self, |pool, _| sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, \
             lease_expires_at = NULL, updated_at = $3 \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2"
        )
        .bind(job_id)
        .bind(worker_id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Fails the running jobs whose lease expired with no attempts left, and returns them.
    /// Each is returned to exactly one caller, so the failure is posted once. Also appends a
    /// `failed` event to each job's transcript.
    pub async fn take_exhausted(&self) -> Result<Vec<ExhaustedJob>, StoreError> {
        let now = self.now();
        with_pool!(self, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await?;
            // The message is built in SQL so that the whole sweep is one statement; CAST is
            // spelled the same in both dialects.
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "UPDATE jobs SET state = 'failed', \
                 error = 'lease expired ' || CAST(attempts AS TEXT) || ' times', \
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $1, finished_at = $1 \
                 WHERE state = 'running' AND lease_expires_at <= $1 AND attempts >= max_attempts \
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let job = row.into_job()?;
                let error = job.error.clone().unwrap_or_default();
                sqlx::query(EXPIRE_RESERVATIONS)
                    .bind(job.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO job_events (job_id, kind, data, created_at) \
                     VALUES ($1, 'failed', $2, $3)",
                )
                .bind(job.id)
                .bind(serde_json::json!({ "error": &error }).to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                out.push(ExhaustedJob {
                    id: job.id,
                    kind: job.kind,
                    repo: job.repo,
                    installation_id: job.installation_id,
                    payload: job.payload,
                    attempts: job.attempts,
                    error,
                });
            }
            tx.commit().await?;
            out.sort_by_key(|j| j.id);
            Ok(out)
        })
    }

    pub async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = with_pool!(self, |pool, _| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(JobRow::into_job).transpose()
    }

    /// Job counts by kind and state, for `/metrics` (combinations with no job are absent).
    pub async fn jobs_by_state(&self) -> Result<Vec<JobCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(self, |pool, _| sqlx::query_as(
            "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state"
        )
        .fetch_all(pool)
        .await?);
        rows.into_iter()
            .map(|(kind, state, count)| {
                Ok(JobCount {
                    kind,
                    state: JobState::parse(&state)?,
                    count,
                })
            })
            .collect()
    }

    /// Appends one entry to the job's transcript.
    pub async fn append_event(
        &self,
        job_id: JobId,
        kind: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let data = scrubbed_json(&data.to_string());
        with_pool!(self, |pool, _| sqlx::query(
            "INSERT INTO job_events (job_id, kind, data, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(job_id)
        .bind(kind)
        .bind(data)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    /// The job's transcript, oldest first.
    pub async fn events(&self, job_id: JobId) -> Result<Vec<JobEvent>, StoreError> {
        let rows: Vec<(i64, i64, String, String, i64)> = with_pool!(self, |pool, _| {
            sqlx::query_as(
                "SELECT id, job_id, kind, data, created_at FROM job_events \
                 WHERE job_id = $1 ORDER BY id",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, job_id, kind, data, created_at)| {
                Ok(JobEvent {
                    data: serde_json::from_str(&data).map_err(|e| {
                        StoreError::Corrupt(format!("event {id} of job {job_id} is not JSON: {e}"))
                    })?,
                    id,
                    job_id,
                    kind,
                    created_at,
                })
            })
            .collect()
    }
}

/// JSON bound for a column, scrubbed of secrets (see [`crate::scrub`]). Should a
/// credential-looking pattern have spanned JSON punctuation, the scrubbed text is kept as
/// one JSON string instead, so the column always holds valid JSON.
fn scrubbed_json(json: &str) -> String {
    let clean = crate::scrub::scrub(json);
    if clean == json || serde_json::from_str::<serde::de::IgnoredAny>(&clean).is_ok() {
        clean
    } else {
        Value::String(clean).to_string()
    }
}
