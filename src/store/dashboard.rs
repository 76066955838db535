//! What the operator's dashboard reads: jobs by state and kind, the month's spend per
//! repository and installation, the queue, daily spend by role, a filtered page of jobs and
//! one job's transcript. Read-only, on both dialects; every list is bounded.

use super::{with_pool, Store, StoreError, UnixMillis};

/// Jobs of one kind in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindState {
    pub kind: String,
    pub state: String,
    pub count: i64,
}

/// A repository's month: settled spend, outstanding reservations, its installation and the
/// cap its last job ran under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMonth {
    pub repo: String,
    pub installation_id: i64,
    pub spent_picos: i64,
    pub reserved_picos: i64,
    pub cap_picos: Option<i64>,
}

/// The queue: how many jobs wait, and since when the oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub depth: i64,
    pub oldest: Option<UnixMillis>,
}

/// Settled spend of one repository, role and model on one day (UTC), with its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySpend {
    pub repo: String,
    pub role: String,
    pub model: String,
    /// Days since 1970-01-01.
    pub day: i64,
    pub cost_picos: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub output_tokens: i64,
}

/// What the jobs list is filtered by; `before` pages (jobs with a smaller id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub repo: Option<String>,
    pub kind: Option<String>,
    pub state: Option<String>,
    pub from: Option<UnixMillis>,
    pub to: Option<UnixMillis>,
    pub before: Option<i64>,
}

/// A row of the jobs list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLine {
    pub id: i64,
    pub kind: String,
    pub repo: String,
    pub state: String,
    pub attempts: i64,
    pub payload: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub thread: Option<String>,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    pub cost_picos: i64,
}

/// One event of a job's transcript, as it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptEvent {
    pub kind: String,
    pub data: String,
    pub at: UnixMillis,
}

/// The most transcript events one page shows.
pub const MAX_EVENTS: i64 = 5_000;

const JOB_LINE: &str = "j.id, j.kind, j.repo, j.state, j.attempts, j.payload, j.result, j.error, \
     j.thread, j.created_at, j.finished_at, \
     CAST(COALESCE((SELECT SUM(l.cost_picos) FROM ledger l WHERE l.job_id = j.id \
     AND l.state IN ('settled', 'expired')), 0) AS BIGINT)";

type JobTuple = (
    i64,
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    i64,
);

fn job_line(t: JobTuple) -> JobLine {
    JobLine {
        id: t.0,
        kind: t.1,
        repo: t.2,
        state: t.3,
        attempts: t.4,
        payload: t.5,
        result: t.6,
        error: t.7,
        thread: t.8,
        created_at: t.9,
        finished_at: t.10,
        cost_picos: t.11,
    }
}

impl Store {
    /// Jobs created since `since`, counted by kind and state.
    pub async fn jobs_since(&self, since: UnixMillis) -> Result<Vec<KindState>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(self, |pool, _| sqlx::query_as(
            // The LIMIT keeps SQLite from flattening the subquery, which would have it walk
            // a kind index for the grouping instead of reading one day by time.
            "SELECT kind, state, COUNT(*) FROM (SELECT kind, state FROM jobs \
             WHERE created_at >= $1 LIMIT 100000000) t GROUP BY kind, state ORDER BY kind, state"
        )
        .bind(since)
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(kind, state, count)| KindState { kind, state, count })
            .collect())
    }

    /// Each repository's spend in `month`, with the cap its latest job ran under.
    pub async fn month_by_repo(&self, month: &str) -> Result<Vec<RepoMonth>, StoreError> {
        let rows: Vec<(String, i64, i64, i64, Option<i64>)> = with_pool!(self, |pool, _| {
            sqlx::query_as(
                "SELECT l.repo, MIN(l.installation_id), \
                 CAST(COALESCE(SUM(CASE WHEN l.state IN ('settled', 'expired') THEN l.cost_picos ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN l.state = 'reserved' THEN l.reserved_picos ELSE 0 END), 0) AS BIGINT), \
                 (SELECT c.monthly_cap_picos FROM repo_caps c WHERE c.repo = l.repo) \
                 FROM ledger l WHERE l.month = $1 GROUP BY l.repo ORDER BY l.repo LIMIT 1000"
            )
            .bind(month)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| RepoMonth {
                repo: r.0,
                installation_id: r.1,
                spent_picos: r.2,
                reserved_picos: r.3,
                cap_picos: r.4,
            })
            .collect())
    }

    /// The cap a repository's job runs under, kept for the dashboard (the repository's file
    /// is on GitHub; the store keeps what the latest job read from it).
    pub async fn note_repo_cap(
        &self,
        repo: &str,
        cap_picos: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        with_pool!(self, |pool, _| sqlx::query(
            "INSERT INTO repo_caps (repo, monthly_cap_picos, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo) DO UPDATE SET monthly_cap_picos = excluded.monthly_cap_picos, \
             updated_at = excluded.updated_at"
        )
        .bind(repo)
        .bind(cap_picos)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// How many jobs since `since` were refused or stopped by a budget: declined before
    /// their first call, or stopped when the next call could cross a cap.
    pub async fn budget_refusals(&self, since: UnixMillis) -> Result<i64, StoreError> {
        let n: (i64,) = with_pool!(self, |pool, _| sqlx::query_as(
            "SELECT COUNT(*) FROM jobs j WHERE j.created_at >= $1 AND ( \
             j.result LIKE '%Not started:%' OR EXISTS (SELECT 1 FROM job_events e \
             WHERE e.job_id = j.id AND e.kind = 'budget_reached'))"
        )
        .bind(since)
        .fetch_one(pool)
        .await?);
        Ok(n.0)
    }

    /// The queue's depth and its oldest job.
    pub async fn queue(&self) -> Result<Queue, StoreError> {
        let (depth, oldest): (i64, Option<i64>) = with_pool!(self, |pool, _| sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM jobs WHERE state = 'queued'"
        )
        .fetch_one(pool)
        .await?);
        Ok(Queue { depth, oldest })
    }

    /// Settled (and expired) spend per repository, role, model and day, from the day of
    /// `since` on.
    pub async fn daily_spend(&self, since: UnixMillis) -> Result<Vec<DaySpend>, StoreError> {
        type Row = (String, String, String, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = with_pool!(self, |pool, _| {
            sqlx::query_as(
                // Kept by triggers on the ledger (the dashboard's migration): one row per
                // repository, day, role and model.
                "SELECT repo, role, model, day, cost_picos, input_tokens, cached_input_tokens, \
             cache_write_tokens, output_tokens FROM ledger_days WHERE day >= $1 \
             ORDER BY day DESC, repo, role, model LIMIT 100000",
            )
            .bind(since.div_euclid(86_400_000))
            .fetch_all(pool)
            .await?
        });
        // Newest first in the query, so a cut drops the oldest days; oldest first here.
        Ok(rows
            .into_iter()
            .rev()
            .map(|r| DaySpend {
                repo: r.0,
                role: r.1,
                model: r.2,
                day: r.3,
                cost_picos: r.4,
                input_tokens: r.5,
                cached_input_tokens: r.6,
                cache_write_tokens: r.7,
                output_tokens: r.8,
            })
            .collect())
    }

    /// Up to `limit` jobs matching `f`, newest first. Only the filters given are in the
    /// query (so each can use its index); every value is bound, never spliced.
    pub async fn job_page(&self, f: &JobFilter, limit: i64) -> Result<Vec<JobLine>, StoreError> {
        let mut sql = format!("SELECT {JOB_LINE} FROM jobs j WHERE 1 = 1");
        let mut n = 0;
        let mut next = |col: &str, op: &str| {
            n += 1;
            format!(" AND j.{col} {op} ${n}")
        };
        let texts = [("repo", &f.repo), ("kind", &f.kind), ("state", &f.state)];
        for (col, v) in &texts {
            if v.is_some() {
                sql.push_str(&next(col, "="));
            }
        }
        let numbers = [
            ("created_at", ">=", f.from),
            ("created_at", "<", f.to),
            ("id", "<", f.before),
        ];
        for (col, op, v) in &numbers {
            if v.is_some() {
                sql.push_str(&next(col, op));
            }
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY j.id DESC LIMIT ${n}"));
        let rows: Vec<JobTuple> = with_pool!(self, |pool, _| {
            let mut q = sqlx::query_as(&sql);
            for (_, v) in &texts {
                if let Some(v) = v {
                    q = q.bind(v.as_str());
                }
            }
            for (_, _, v) in &numbers {
                if let Some(v) = v {
                    q = q.bind(*v);
                }
            }
            q.bind(limit).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(job_line).collect())
    }

    /// One job's row for the dashboard.
    pub async fn job_line(&self, id: i64) -> Result<Option<JobLine>, StoreError> {
        let sql = format!("SELECT {JOB_LINE} FROM jobs j WHERE j.id = $1");
        let row: Option<JobTuple> = with_pool!(self, |pool, _| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(job_line))
    }

    /// A job's transcript, oldest first (at most [`MAX_EVENTS`]).
    pub async fn transcript(&self, job_id: i64) -> Result<Vec<TranscriptEvent>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(self, |pool, _| {
            sqlx::query_as(
            "SELECT kind, data, created_at FROM job_events WHERE job_id = $1 ORDER BY id LIMIT $2"
        )
        .bind(job_id)
        .bind(MAX_EVENTS)
        .fetch_all(pool)
        .await?
        });
        Ok(rows
            .into_iter()
            .map(|(kind, data, at)| TranscriptEvent { kind, data, at })
            .collect())
    }
}
