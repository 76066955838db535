//! Group commit of webhook deliveries.
//!
//! Every delivery must be committed before it is answered, and a commit costs a WAL write and
//! an fsync whatever it holds. So [`Store::record_delivery`] does not commit on its own: it
//! hands the delivery to one writer task per store, which takes everything that queued up
//! while its previous transaction was committing, records the lot in one transaction, and
//! only then answers each caller. Under light load a batch is one delivery and nothing waits;
//! under a burst the batches grow and the fsyncs per delivery fall.
//!
//! Semantics are those of one transaction per delivery: a delivery id repeated inside a batch,
//! like one seen in an earlier batch, is [`DeliveryOutcome::Duplicate`] with no job (the first
//! to arrive is `New`); a dedupe key taken by a job earlier in the batch (in delivery-id order)
//! deduplicates a later one. If the transaction fails, every delivery of the batch gets the
//! error (the webhook answers 503 and GitHub may redeliver) and none of them is recorded.

use tokio::sync::{mpsc, oneshot};

use super::jobs::{DeliveryOutcome, NewJob};
use super::{begin_write, with_pool, Store, StoreError};

/// At most this many deliveries per transaction: bounds the time one commit holds the write
/// lock (the workers' claims wait for it on SQLite) and the memory of a batch.
const MAX_BATCH: usize = 256;

/// Deliveries waiting for the writer; beyond this, callers wait to enqueue (backpressure).
const QUEUE: usize = 4096;

/// One webhook delivery and the jobs it creates.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repo: Option<String>,
    pub installation_id: Option<i64>,
    pub jobs: Vec<NewJob>,
}

type Reply = oneshot::Sender<Result<DeliveryOutcome, StoreError>>;

/// The sending side of the writer; the writer stops when the last store clone drops it.
#[derive(Debug)]
pub(crate) struct Intake {
    tx: mpsc::Sender<(NewDelivery, Reply)>,
}

impl Intake {
    /// Starts the writer of `store` (which must not itself hold an `Intake`: the writer would
    /// keep its own channel open and never stop).
    pub(crate) fn start(store: Store) -> Intake {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, rx));
        Intake { tx }
    }

    pub(crate) async fn record(&self, d: NewDelivery) -> Result<DeliveryOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Database("the delivery writer has stopped".into());
        self.tx.send((d, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write(store: Store, mut rx: mpsc::Receiver<(NewDelivery, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (deliveries, r): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        replies.extend(r);
        match store.record_deliveries(&deliveries).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    // A caller that gave up (its request was dropped) needs no answer.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = deliveries.len(), "could not record a batch of deliveries");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Store {
    /// Records a webhook delivery and the jobs it creates, atomically, committed before this
    /// returns. A delivery id seen before inserts nothing and returns
    /// [`DeliveryOutcome::Duplicate`]; concurrent deliveries of the same id are settled by the
    /// primary key, so exactly one is `New`. Concurrent calls share a transaction (module docs).
    pub async fn record_delivery(
        &self,
        delivery_id: &str,
        event: &str,
        action: Option<&str>,
        repo: Option<&str>,
        installation_id: Option<i64>,
        jobs: Vec<NewJob>,
    ) -> Result<DeliveryOutcome, StoreError> {
        let d = NewDelivery {
            delivery_id: delivery_id.to_string(),
            event: event.to_string(),
            action: action.map(str::to_string),
            repo: repo.map(str::to_string),
            installation_id,
            jobs,
        };
        match &self.intake {
            Some(intake) => intake.record(d).await,
            None => {
                let mut outcomes = self.record_deliveries(std::slice::from_ref(&d)).await?;
                outcomes
                    .pop()
                    .ok_or_else(|| StoreError::Database("no outcome for the delivery".into()))
            }
        }
    }

    /// Records `deliveries` in one transaction: all of them or, on error, none.
    pub(crate) async fn record_deliveries(
        &self,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<DeliveryOutcome>, StoreError> {
        let now = self.now();
        // Serialising a `Value` cannot fail (its keys are strings); the error is kept anyway.
        let payloads = deliveries
            .iter()
            .map(|d| {
                d.jobs
                    .iter()
                    .map(|j| serde_json::to_string(&j.payload))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::OutOfRange(format!("job payload: {e}")))?;
        // Rows are locked in delivery-id order, the same in every process, so two PostgreSQL
        // replicas committing overlapping batches cannot deadlock on each other's ids. The
        // sort is stable: of one id repeated in the batch, the first to arrive is `New`.
        let mut order: Vec<usize> = (0..deliveries.len()).collect();
        order.sort_by(|&a, &b| deliveries[a].delivery_id.cmp(&deliveries[b].delivery_id));
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; deliveries.len()];
        with_pool!(self, |pool, dialect| {
            let mut tx = begin_write(pool, dialect).await?;
            for &i in &order {
                let (d, payloads) = (&deliveries[i], &payloads[i]);
                let inserted = sqlx::query(
                    "INSERT INTO deliveries (delivery_id, event, action, repo, installation_id, \
                     received_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (delivery_id) DO NOTHING",
                )
                .bind(&d.delivery_id)
                .bind(&d.event)
                .bind(&d.action)
                .bind(&d.repo)
                .bind(d.installation_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    outcomes[i] = Some(DeliveryOutcome::Duplicate);
                    continue;
                }
                let mut job_ids = Vec::with_capacity(d.jobs.len());
                let mut deduplicated = Vec::new();
                for (job, payload) in d.jobs.iter().zip(payloads) {
                    // DO NOTHING without a target: the only other unique index is the partial
                    // one on live dedupe keys, and the id is generated.
                    let id: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO jobs (delivery_id, kind, repo, installation_id, payload, \
                         dedupe_key, state, attempts, max_attempts, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $8) \
                         ON CONFLICT DO NOTHING RETURNING id",
                    )
                    .bind(&d.delivery_id)
                    .bind(&job.kind)
                    .bind(&job.repo)
                    .bind(job.installation_id)
                    .bind(payload)
                    .bind(&job.dedupe_key)
                    .bind(self.max_attempts)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match (id, &job.dedupe_key) {
                        (Some(id), _) => job_ids.push(id),
                        (None, Some(key)) => deduplicated.push(key.clone()),
                        (None, None) => {
                            return Err(StoreError::Database(
                                "a job insert was skipped without a dedupe key".into(),
                            ))
                        }
                    }
                }
                outcomes[i] = Some(DeliveryOutcome::New {
                    job_ids,
                    deduplicated,
                });
            }
            tx.commit().await?;
        });
        // Every index is in `order`, so every outcome was set.
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Database("a delivery was skipped".into())))
            .collect()
    }
}
