//! The budget ledger in the database: one row per model call, and reservations that hold
//! against the per-run, per-repo-month and per-installation-month caps across processes.
//!
//! **Why reservations cannot interleave.** All three caps of a call belong to one
//! installation, so `reserve` serialises per installation: on PostgreSQL it takes
//! `pg_advisory_xact_lock` on a hash of the installation id as the first statement of its
//! transaction (held until commit; under READ COMMITTED the sums that follow see every
//! reservation committed before the lock was granted); on SQLite `BEGIN IMMEDIATE` takes the
//! database's single write lock before summing. Sum, check, insert, commit — nobody else's
//! reservation for that installation fits in between.
//!
//! **Committed** = settled (and expired) costs + outstanding reservations. The per-run cap
//! counts every attempt of the job, so retrying a job does not give it a fresh budget.
//!
//! **Orphaned reservations** (a process died mid-call) stay `reserved`, and so count, until the
//! job is next claimed or finishes; then they become `expired` and count at the reserved amount
//! for good (see `jobs.rs`). This errs on the side of counting money that may have been spent.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    begin_write, picos_from_db, picos_to_db, with_pool, Dialect, JobId, Store, StoreError,
    UnixMillis,
};
use crate::config::AgentRole;
use crate::money::ledger::{BudgetError, Ledger, LedgerEntry, Reservation, ReservationRequest};
use crate::money::pricing::Usd;
use crate::money::Usage;

/// What a row counts against a cap, in SQL.
const COUNTED: &str = "CASE WHEN state = 'reserved' THEN reserved_picos \
     WHEN state IN ('settled', 'expired') THEN cost_picos ELSE 0 END";
/// What a row has cost, in SQL: settled and expired rows.
pub(super) const SPENT: &str =
    "CASE WHEN state IN ('settled', 'expired') THEN cost_picos ELSE 0 END";

/// Whose money a ledger is counting, and the caps that hold for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerScope {
    pub job_id: JobId,
    /// `owner/name`.
    pub repo: String,
    pub installation_id: i64,
    /// Per job, across its attempts.
    pub per_run_cap: Option<Usd>,
    pub repo_monthly_cap: Option<Usd>,
    pub installation_monthly_cap: Option<Usd>,
    /// The month the calls are charged to, `YYYY-MM` (UTC); see [`month_of`].
    pub month: String,
}

/// Settled spend and what counts against a cap (settled + outstanding reservations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spend {
    pub spent: Usd,
    pub committed: Usd,
}

/// The UTC month `YYYY-MM` of a Unix time in milliseconds.
pub fn month_of(t: UnixMillis) -> String {
    // Howard Hinnant's civil-from-days; exact for every i64 day count we can meet.
    let days = t.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}")
}

fn valid_month(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
        && matches!(
            &m[5..],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        )
}

/// Tokens are informational (the cost is what is enforced): saturate rather than fail.
fn tokens_to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn role_from_db(s: &str) -> Result<AgentRole, StoreError> {
    match s {
        "supervisor" => Ok(AgentRole::Supervisor),
        "worker" => Ok(AgentRole::Worker),
        other => Err(StoreError::Corrupt(format!(
            "unknown role {other:?} in the ledger"
        ))),
    }
}

fn store_err(e: StoreError) -> BudgetError {
    BudgetError::Store(e.to_string())
}

/// A [`Ledger`] over the store for one job.
#[derive(Debug, Clone)]
pub struct SqlLedger {
    pub(super) store: Store,
    pub(super) scope: Arc<LedgerScope>,
}

impl SqlLedger {
    pub fn new(store: Store, scope: LedgerScope) -> Result<SqlLedger, StoreError> {
        if !valid_month(&scope.month) {
            return Err(StoreError::OutOfRange(format!(
                "ledger month {:?} is not YYYY-MM",
                scope.month
            )));
        }
        Ok(SqlLedger {
            store,
            scope: Arc::new(scope),
        })
    }

    pub fn scope(&self) -> &LedgerScope {
        &self.scope
    }

    async fn try_reserve(&self, req: ReservationRequest) -> Result<Reservation, ReserveError> {
        let s = &*self.scope;
        let amount = picos_to_db(req.amount)?;
        let now = self.store.now();
        let id: i64 = with_pool!(self.store, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await.map_err(StoreError::from)?;
            if dialect == Dialect::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(format!("equitr:ledger:installation:{}", s.installation_id))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            // One pass over the installation's rows this month (plus the job's from earlier
            // months, for a run that spans a month boundary).
            let (run, repo, inst): (i64, i64, i64) = sqlx::query_as(&format!(
                "SELECT \
                 CAST(COALESCE(SUM(CASE WHEN job_id = $1 THEN {COUNTED} END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN repo = $2 AND month = $4 THEN {COUNTED} END), 0) \
                   AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN month = $4 THEN {COUNTED} END), 0) AS BIGINT) \
                 FROM ledger WHERE installation_id = $3 AND (month = $4 OR job_id = $1)"
            ))
            .bind(s.job_id)
            .bind(&s.repo)
            .bind(s.installation_id)
            .bind(&s.month)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            for (cap, committed, which) in [
                (s.per_run_cap, run, "run"),
                (s.repo_monthly_cap, repo, "repo monthly"),
                (s.installation_monthly_cap, inst, "installation monthly"),
            ] {
                let Some(cap) = cap else { continue };
                let committed = picos_from_db(committed)?;
                // Checked: an overflowing sum is certainly above the cap.
                let over = match committed.checked_add(req.amount) {
                    Some(total) => total > cap,
                    None => true,
                };
                if over {
                    tracing::info!(
                        job = s.job_id,
                        repo = %s.repo,
                        installation = s.installation_id,
                        cap = which,
                        "budget reservation refused"
                    );
                    tx.rollback().await.map_err(StoreError::from)?;
                    return Err(ReserveError::Budget(BudgetError::Exceeded {
                        cap,
                        committed,
                        requested: req.amount,
                    }));
                }
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO ledger (job_id, repo, installation_id, month, role, model, state, \
                 reserved_picos, cost_picos, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7, 0, $8) RETURNING id",
            )
            .bind(s.job_id)
            .bind(&s.repo)
            .bind(s.installation_id)
            .bind(&s.month)
            .bind(req.role.as_str())
            .bind(&req.model)
            .bind(amount)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            tx.commit().await.map_err(StoreError::from)?;
            id
        });
        Ok(Reservation {
            id: u64::try_from(id)
                .map_err(|_| StoreError::Corrupt(format!("negative ledger id {id}")))?,
            role: req.role,
            model: req.model,
            amount: req.amount,
        })
    }

    async fn try_settle(
        &self,
        r: Reservation,
        actual: Usd,
        usage: Usage,
    ) -> Result<(), StoreError> {
        let s = &*self.scope;
        let cost = picos_to_db(actual)?;
        let now = self.store.now();
        let id = i64::try_from(r.id).unwrap_or(-1);
        let n = with_pool!(self.store, |pool, _| sqlx::query(
            "UPDATE ledger SET state = 'settled', cost_picos = $3, input_tokens = $4, \
             cached_input_tokens = $5, cache_write_tokens = $6, output_tokens = $7, \
             settled_at = $8 WHERE id = $1 AND job_id = $2 AND state <> 'settled'"
        )
        .bind(id)
        .bind(s.job_id)
        .bind(cost)
        .bind(tokens_to_db(usage.input_tokens))
        .bind(tokens_to_db(usage.cached_input_tokens))
        .bind(tokens_to_db(usage.cache_write_tokens))
        .bind(tokens_to_db(usage.output_tokens))
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        if n == 1 {
            return Ok(());
        }
        // Not ours, or settled twice. The money was spent all the same: record it.
        tracing::warn!(
            id = r.id,
            job = s.job_id,
            "settling an unknown budget reservation"
        );
        with_pool!(self.store, |pool, _| sqlx::query(
            "INSERT INTO ledger (job_id, repo, installation_id, month, role, model, state, \
             reserved_picos, cost_picos, input_tokens, cached_input_tokens, cache_write_tokens, \
             output_tokens, created_at, settled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'settled', 0, $7, $8, $9, $10, $11, $12, $12)"
        )
        .bind(s.job_id)
        .bind(&s.repo)
        .bind(s.installation_id)
        .bind(&s.month)
        .bind(r.role.as_str())
        .bind(&r.model)
        .bind(cost)
        .bind(tokens_to_db(usage.input_tokens))
        .bind(tokens_to_db(usage.cached_input_tokens))
        .bind(tokens_to_db(usage.cache_write_tokens))
        .bind(tokens_to_db(usage.output_tokens))
        .bind(now)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    async fn try_release(&self, r: Reservation) -> Result<(), StoreError> {
        let id = i64::try_from(r.id).unwrap_or(-1);
        // An expired reservation may be released too: its owner was alive after all and
        // knows the call was not billed.
        let n = with_pool!(self.store, |pool, _| sqlx::query(
            "UPDATE ledger SET state = 'released', cost_picos = 0 \
             WHERE id = $1 AND job_id = $2 AND state IN ('reserved', 'expired')"
        )
        .bind(id)
        .bind(self.scope.job_id)
        .execute(pool)
        .await?
        .rows_affected());
        if n == 0 {
            tracing::warn!(id = r.id, "releasing an unknown budget reservation");
        }
        Ok(())
    }

    /// This job's spend (all attempts).
    pub async fn job_spend(&self) -> Result<Spend, StoreError> {
        self.store.job_spend(self.scope.job_id).await
    }

    /// This job's settled calls, oldest first (orphaned reservations appear with no tokens).
    pub async fn try_entries(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        type Row = (String, String, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = with_pool!(self.store, |pool, _| sqlx::query_as(
            "SELECT role, model, cost_picos, input_tokens, cached_input_tokens, \
             cache_write_tokens, output_tokens FROM ledger \
             WHERE job_id = $1 AND state IN ('settled', 'expired') ORDER BY id"
        )
        .bind(self.scope.job_id)
        .fetch_all(pool)
        .await?);
        let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
        rows.into_iter()
            .map(|(role, model, cost, i, ci, cw, o)| {
                Ok(LedgerEntry {
                    role: role_from_db(&role)?,
                    model,
                    usage: Usage {
                        input_tokens: tokens(i),
                        cached_input_tokens: tokens(ci),
                        cache_write_tokens: tokens(cw),
                        output_tokens: tokens(o),
                    },
                    cost: picos_from_db(cost)?,
                })
            })
            .collect()
    }
}

enum ReserveError {
    Budget(BudgetError),
    Store(StoreError),
}

impl From<StoreError> for ReserveError {
    fn from(e: StoreError) -> Self {
        ReserveError::Store(e)
    }
}

#[async_trait]
impl Ledger for SqlLedger {
    async fn note_estimate(&self, kind: &str, low: Usd, high: Usd) {
        if let Err(e) = self.try_note_estimate(kind, low, high).await {
            tracing::error!(error = %e, "could not record the job's estimate");
        }
    }

    async fn estimate_accuracy(&self) -> Vec<crate::money::ledger::Accuracy> {
        match self.try_accuracy().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "could not read the estimates");
                Vec::new()
            }
        }
    }

    async fn headroom(&self) -> Option<crate::money::ledger::Headroom> {
        let s = &*self.scope;
        let read = async {
            let run = self.store.job_spend(s.job_id).await?.committed;
            let repo = self.store.month_spend(&s.repo, &s.month).await?.committed;
            let inst = self
                .store
                .installation_month_spend(s.installation_id, &s.month)
                .await?
                .committed;
            Ok::<_, StoreError>((run, repo, inst))
        };
        match read.await {
            Ok((run, repo, inst)) => crate::money::ledger::Headroom::tightest([
                (
                    s.per_run_cap,
                    run,
                    "budget.per_run_usd (or the operator's llm.budget)",
                ),
                (s.repo_monthly_cap, repo, "budget.monthly_usd"),
                (
                    s.installation_monthly_cap,
                    inst,
                    "server.installation_monthly_usd",
                ),
            ]),
            Err(e) => {
                // Not knowing is not a reason to decline: `reserve` still holds the caps.
                tracing::error!(error = %e, "could not read the budget's headroom");
                None
            }
        }
    }

    async fn reserve(&self, req: ReservationRequest) -> Result<Reservation, BudgetError> {
        self.try_reserve(req).await.map_err(|e| match e {
            ReserveError::Budget(b) => b,
            ReserveError::Store(s) => store_err(s),
        })
    }

    async fn settle(&self, r: Reservation, actual: Usd, usage: Usage) -> Result<(), BudgetError> {
        self.try_settle(r, actual, usage).await.map_err(store_err)
    }

    async fn release(&self, r: Reservation) -> Result<(), BudgetError> {
        self.try_release(r).await.map_err(store_err)
    }

    /// The trait cannot report an error here: on a database error this logs it and returns
    /// zero. Use [`SqlLedger::job_spend`] where the error matters.
    async fn spent(&self) -> Usd {
        match self.job_spend().await {
            Ok(s) => s.spent,
            Err(e) => {
                tracing::error!(error = %e, "could not read the job's spend");
                Usd::ZERO
            }
        }
    }

    /// As [`Ledger::spent`]; caps are enforced by `reserve`, never from this number.
    async fn committed(&self) -> Usd {
        match self.job_spend().await {
            Ok(s) => s.committed,
            Err(e) => {
                tracing::error!(error = %e, "could not read the job's committed budget");
                Usd::ZERO
            }
        }
    }

    async fn entries(&self) -> Vec<LedgerEntry> {
        match self.try_entries().await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "could not read the job's ledger entries");
                Vec::new()
            }
        }
    }

    async fn month(&self) -> Option<(Usd, Option<Usd>)> {
        match self
            .store
            .month_spend(&self.scope.repo, &self.scope.month)
            .await
        {
            Ok(s) => Some((s.spent, self.scope.repo_monthly_cap)),
            Err(e) => {
                tracing::error!(error = %e, "could not read the month's spend");
                None
            }
        }
    }

    async fn month_spend(&self) -> Option<crate::money::ledger::MonthSpend> {
        let (spent, cap) = self.month().await?;
        let scheduled = match self
            .store
            .schedule_month_spend(&self.scope.repo, &self.scope.month)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "could not read the schedules' spend");
                Vec::new()
            }
        };
        Some(crate::money::ledger::MonthSpend {
            month: Some(self.scope.month.clone()),
            spent,
            cap,
            scheduled,
        })
    }
}

impl Store {
    /// A job's spend, all attempts.
    pub async fn job_spend(&self, job_id: JobId) -> Result<Spend, StoreError> {
        self.spend("job_id = $1", |q| q.bind(job_id)).await
    }

    /// A repository's spend in a month (`YYYY-MM`), for the cost summary and `/equitr cost`.
    pub async fn month_spend(&self, repo: &str, month: &str) -> Result<Spend, StoreError> {
        self.spend("repo = $1 AND month = $2", |q| q.bind(repo).bind(month))
            .await
    }

    /// An installation's spend in a month (`YYYY-MM`).
    pub async fn installation_month_spend(
        &self,
        installation_id: i64,
        month: &str,
    ) -> Result<Spend, StoreError> {
        self.spend("installation_id = $1 AND month = $2", |q| {
            q.bind(installation_id).bind(month)
        })
        .await
    }

    async fn spend<'q, F>(&self, filter: &str, bind: F) -> Result<Spend, StoreError>
    where
        F: Fn(SpendQuery<'q>) -> SpendQuery<'q>,
    {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM({SPENT}), 0) AS BIGINT), \
             CAST(COALESCE(SUM({COUNTED}), 0) AS BIGINT) FROM ledger WHERE {filter}"
        );
        let (spent, committed): (i64, i64) = with_pool!(self, |pool, _| {
            let args = bind(SpendQuery::default()).args;
            let q = args.into_iter().fold(sqlx::query_as(&sql), |q, a| match a {
                SpendArg::Int(i) => q.bind(i),
                SpendArg::Text(t) => q.bind(t),
            });
            q.fetch_one(pool).await?
        });
        Ok(Spend {
            spent: picos_from_db(spent)?,
            committed: picos_from_db(committed)?,
        })
    }
}

/// Arguments of a spend query, collected before the driver is known (a sqlx query's type
/// depends on the driver, and the spend queries are shared between dialects).
#[derive(Default)]
struct SpendQuery<'q> {
    args: Vec<SpendArg<'q>>,
}

enum SpendArg<'q> {
    Int(i64),
    Text(&'q str),
}

impl<'q> SpendQuery<'q> {
    fn bind(mut self, v: impl Into<SpendArg<'q>>) -> Self {
        self.args.push(v.into());
        self
    }
}

impl From<i64> for SpendArg<'_> {
    fn from(v: i64) -> Self {
        SpendArg::Int(v)
    }
}

impl<'q> From<&'q str> for SpendArg<'q> {
    fn from(v: &'q str) -> Self {
        SpendArg::Text(v)
    }
}

impl<'q> From<&'q String> for SpendArg<'q> {
    fn from(v: &'q String) -> Self {
        SpendArg::Text(v.as_str())
    }
}
