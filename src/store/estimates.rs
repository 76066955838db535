//! The estimates jobs make before their first call, beside what they really cost: kept per
//! job, read back by kind for `/equitr cost`.

use super::ledger::{SqlLedger, SPENT};
use super::{picos_to_db, with_pool, StoreError};
use crate::money::ledger::Accuracy;
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

/// Rows of (kind, low, high, actual) in picodollars, grouped by kind.
fn accuracy(rows: &[(String, i64, i64, i64)]) -> Vec<Accuracy> {
    let mut out: Vec<Accuracy> = Vec::new();
    let mut ratios: Vec<f64> = Vec::new();
    let flush = |out: &mut Vec<Accuracy>, ratios: &mut Vec<f64>| {
        if let Some(last) = out.last_mut() {
            ratios.sort_by(f64::total_cmp);
            last.median_ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
        }
        ratios.clear();
    };
    for (kind, low, high, actual) in rows {
        if out.last().map_or(true, |a| &a.kind != kind) {
            flush(&mut out, &mut ratios);
            out.push(Accuracy {
                kind: kind.clone(),
                jobs: 0,
                median_ratio: 0.0,
                within: 0,
            });
        }
        let Some(a) = out.last_mut() else { continue };
        a.jobs += 1;
        if low <= actual && actual <= high {
            a.within += 1;
        }
        let mid = (*low as f64 + *high as f64) / 2.0;
        if mid > 0.0 {
            ratios.push(*actual as f64 / mid);
        }
    }
    flush(&mut out, &mut ratios);
    out
}
