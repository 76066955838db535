//! The estimates jobs make before their first call, beside what they really cost: kept per
//! job, read back by kind for `/equitr cost`.

use super::ledger::{SqlLedger, SPENT};
use super::{picos_to_db, with_pool, StoreError};
use crate::money::ledger::{accuracy, Accuracy};
use crate::money::pricing::Usd;

impl SqlLedger {
    pub(super) async fn try_note_estimate(
        &self,
        kind: &str,
        low: Usd,
        high: Usd,
    ) -> Result<(), StoreError> {
        let s = &*self.scope;
        let (low, high) = (picos_to_db(low)?, picos_to_db(high)?);
        with_pool!(self.store, |pool, _| sqlx::query(
            "INSERT INTO estimates (job_id, repo, kind, low_picos, high_picos) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO UPDATE SET \
             low_picos = excluded.low_picos, high_picos = excluded.high_picos"
        )
        .bind(s.job_id)
        .bind(&s.repo)
        .bind(kind)
        .bind(low)
        .bind(high)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Per kind, each finished job's estimate and its actual spend.
    pub(super) async fn try_accuracy(&self) -> Result<Vec<Accuracy>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> =
            with_pool!(self.store, |pool, _| sqlx::query_as(&format!(
                "SELECT e.kind, e.low_picos, e.high_picos, \
                 CAST(COALESCE((SELECT SUM({SPENT}) FROM ledger l WHERE l.job_id = e.job_id), 0) \
                 AS BIGINT) FROM estimates e JOIN jobs j ON j.id = e.job_id \
                 WHERE e.repo = $1 AND j.state IN ('succeeded', 'failed') \
                 ORDER BY e.kind, e.job_id DESC LIMIT 10000"
            ))
            .bind(&self.scope.repo)
            .fetch_all(pool)
            .await?);
        Ok(accuracy(&rows))
    }
}
