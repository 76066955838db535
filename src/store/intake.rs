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
use tokio_util::sync::CancellationToken;

use super::jobs::{DeliveryOutcome, NewJob};
use super::{begin_write_on, with_held, Dialect, Held, Store, StoreError};

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
    /// Cancelled by [`Store::close`]: the writer gives its connection back to the pool, which
    /// waits for it.
    closing: CancellationToken,
}

impl Intake {
    /// Starts the writer of `store` (which must not itself hold an `Intake`: the writer would
    /// keep its own channel open and never stop).
    pub(crate) fn start(store: Store) -> Intake {
        let (tx, rx) = mpsc::channel(QUEUE);
        let closing = CancellationToken::new();
        tokio::spawn(write(store, rx, closing.clone()));
        Intake { tx, closing }
    }

    /// Makes the writer let go of its connection now and after every later batch.
    pub(crate) fn release(&self) {
        self.closing.cancel();
    }

    pub(crate) async fn record(&self, d: NewDelivery) -> Result<DeliveryOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Database("the delivery writer has stopped".into());
        self.tx.send((d, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write(
    store: Store,
    mut rx: mpsc::Receiver<(NewDelivery, Reply)>,
    closing: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    // The writer keeps one connection rather than taking whichever the pool hands out: on
    // SQLite a connection's page cache survives its own commits but is thrown away when
    // another connection wrote, so rotating through the pool re-read the tables' pages from
    // the OS for every batch. A pool of one (`:memory:`) is not kept from everyone else.
    let keep = store.max_connections() > 1;
    let mut conn: Option<Held> = None;
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
            _ = closing.cancelled(), if conn.is_some() => {
                conn = None;
                continue;
            }
        };
        if received == 0 {
            break;
        }
        let (deliveries, r): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        replies.extend(r);
        let result = store.record_deliveries_on(&mut conn, &deliveries).await;
        if result.is_err() {
            // Whatever went wrong, the next batch starts on a fresh connection.
            if let Some(c) = conn.take() {
                c.close_on_drop();
            }
        }
        if !keep || closing.is_cancelled() {
            conn = None;
        }
        match result {
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
                let mut outcomes = self
                    .record_deliveries_on(&mut None, std::slice::from_ref(&d))
                    .await?;
                outcomes
                    .pop()
                    .ok_or_else(|| StoreError::Database("no outcome for the delivery".into()))
            }
        }
    }

    /// Records `deliveries` in one transaction: all of them or, on error, none.
    ///
    /// Each table takes one multi-row `INSERT … RETURNING` per chunk of rows rather than one
    /// statement per row: on SQLite every statement is a round trip to the connection's
    /// thread. Chunks are powers of two ([`chunks`]), so a handful of statement shapes stay in
    /// the connection's prepared-statement cache whatever the batch size.
    ///
    /// On the connection in `conn`, or on one taken from the pool and left there.
    // long: one SQL transaction, written out in order so its locking is visible in one place.
    pub(crate) async fn record_deliveries_on(
        &self,
        conn: &mut Option<Held>,
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
        // sort is stable: of one id repeated in the batch, the first to arrive is `New`, and
        // the later copies are `Duplicate` without being sent to the database.
        let mut order: Vec<usize> = (0..deliveries.len()).collect();
        order.sort_by(|&a, &b| deliveries[a].delivery_id.cmp(&deliveries[b].delivery_id));
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; deliveries.len()];
        let mut firsts: Vec<usize> = Vec::with_capacity(order.len());
        for &i in &order {
            match firsts.last() {
                Some(&f) if deliveries[f].delivery_id == deliveries[i].delivery_id => {
                    outcomes[i] = Some(DeliveryOutcome::Duplicate)
                }
                _ => firsts.push(i),
            }
        }
        let held = match conn {
            Some(c) => c,
            None => conn.insert(self.acquire().await?),
        };
        with_held!(held, |c, dialect| {
            let mut tx = begin_write_on(c, dialect).await?;
            // Deliveries: the ids that come back are new, the others were recorded before.
            let mut inserted = std::collections::HashSet::with_capacity(firsts.len());
            for chunk in chunks(&firsts) {
                let sql = insert_sql(
                    "INSERT INTO deliveries (delivery_id, event, action, repo, installation_id, \
                     received_at) VALUES ",
                    "($n, $n, $n, $n, $n, $1)",
                    1,
                    chunk.len(),
                    " ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id",
                );
                let mut q = sqlx::query_scalar::<_, String>(&sql).bind(now);
                for &i in chunk {
                    let d = &deliveries[i];
                    q = q
                        .bind(&d.delivery_id)
                        .bind(&d.event)
                        .bind(&d.action)
                        .bind(&d.repo)
                        .bind(d.installation_id);
                }
                inserted.extend(q.fetch_all(&mut *tx).await?);
            }
            // Jobs of the new deliveries, in delivery-id order then the order given. A dedupe
            // key already used earlier in the batch is deduplicated here (the first job with
            // it is queued, or a live job has it), so no two rows of a statement conflict.
            let mut wanted: Vec<(usize, usize)> = Vec::new();
            let mut keys = std::collections::HashSet::new();
            for &i in &firsts {
                let d = &deliveries[i];
                if !inserted.contains(&d.delivery_id) {
                    outcomes[i] = Some(DeliveryOutcome::Duplicate);
                    continue;
                }
                outcomes[i] = Some(DeliveryOutcome::New {
                    job_ids: Vec::with_capacity(d.jobs.len()),
                    deduplicated: Vec::new(),
                });
                for (j, job) in d.jobs.iter().enumerate() {
                    match &job.dedupe_key {
                        Some(key) if !keys.insert(key.as_str()) => {
                            if let Some(DeliveryOutcome::New { deduplicated, .. }) =
                                &mut outcomes[i]
                            {
                                deduplicated.push(key.clone());
                            }
                        }
                        _ => wanted.push((i, j)),
                    }
                }
            }
            for chunk in chunks(&wanted) {
                // DO NOTHING without a target: the only other unique index is the partial
                // one on live dedupe keys, and the id is generated.
                let sql = insert_sql(
                    "INSERT INTO jobs (delivery_id, kind, repo, installation_id, payload, \
                     dedupe_key, thread, state, attempts, max_attempts, created_at, updated_at) VALUES ",
                    "($n, $n, $n, $n, $n, $n, $n, 'queued', 0, $1, $2, $2)",
                    2,
                    chunk.len(),
                    " ON CONFLICT DO NOTHING RETURNING id, dedupe_key",
                );
                let mut q = sqlx::query_as::<_, (i64, Option<String>)>(&sql)
                    .bind(self.max_attempts)
                    .bind(now);
                for &(i, j) in chunk {
                    let (d, job) = (&deliveries[i], &deliveries[i].jobs[j]);
                    q = q
                        .bind(&d.delivery_id)
                        .bind(&job.kind)
                        .bind(&job.repo)
                        .bind(job.installation_id)
                        .bind(&payloads[i][j])
                        .bind(&job.dedupe_key)
                        .bind(&job.thread);
                }
                let mut rows = q.fetch_all(&mut *tx).await?;
                // Ids are generated in the order of the rows, whatever order RETURNING uses;
                // a row not returned had a dedupe key that a live job holds.
                rows.sort_unstable_by_key(|r| r.0);
                let taken: std::collections::HashSet<&str> =
                    rows.iter().filter_map(|r| r.1.as_deref()).collect();
                let mut ids = rows.iter().map(|r| r.0);
                for &(i, j) in chunk {
                    let Some(DeliveryOutcome::New {
                        job_ids,
                        deduplicated,
                    }) = &mut outcomes[i]
                    else {
                        return Err(StoreError::Database("a job of no new delivery".into()));
                    };
                    match &deliveries[i].jobs[j].dedupe_key {
                        Some(key) if !taken.contains(key.as_str()) => {
                            deduplicated.push(key.clone())
                        }
                        _ => job_ids.push(ids.next().ok_or_else(|| {
                            StoreError::Database(
                                "a job insert was skipped without a dedupe key".into(),
                            )
                        })?),
                    }
                }
                if ids.next().is_some() {
                    return Err(StoreError::Database(
                        "more jobs inserted than were sent".into(),
                    ));
                }
            }
            if !wanted.is_empty() {
                if let Dialect::Postgres = dialect {
                    // Delivered at the commit, to every process listening (see
                    // `Store::listen_for_jobs`): another process starts the job at once.
                    sqlx::query("SELECT pg_notify('equitr_jobs', '')")
                        .execute(&mut *tx)
                        .await?;
                }
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

/// `items` in chunks of at most [`MAX_BATCH`], each a power of two long (largest first):
/// the statement for a chunk of `n` rows is the same text for every batch.
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = items.len().min(MAX_BATCH);
        // The largest power of two not above `n` (n >= 1).
        let n = 1 << (usize::BITS - 1 - n.leading_zeros());
        let (head, tail) = items.split_at(n);
        items = tail;
        Some(head)
    })
}

/// `head` + `rows` copies of `row` separated by commas + `tail`, where each `$n` in `row` is
/// numbered on from the parameters used so far; the first `shared` parameters (`$1`…) are
/// bound once and shared by every row.
fn insert_sql(head: &str, row: &str, shared: usize, rows: usize, tail: &str) -> String {
    let mut next = shared;
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 8) + tail.len());
    sql.push_str(head);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let mut parts = row.split("$n");
        if let Some(first) = parts.next() {
            sql.push_str(first);
        }
        for part in parts {
            next += 1;
            sql.push('$');
            sql.push_str(&next.to_string());
            sql.push_str(part);
        }
    }
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use super::{chunks, insert_sql};

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let items: Vec<usize> = (0..300).collect();
        let lens: Vec<usize> = chunks(&items).map(<[usize]>::len).collect();
        assert_eq!(lens, [256, 32, 8, 4]);
        assert_eq!(chunks::<u8>(&[]).count(), 0);
        let flat: Vec<usize> = chunks(&items).flatten().copied().collect();
        assert_eq!(flat, items);
    }

    #[test]
    fn insert_sql_numbers_each_row_after_the_shared_parameters() {
        assert_eq!(
            insert_sql(
                "INSERT INTO t VALUES ",
                "($n, $1, $n)",
                1,
                2,
                " RETURNING x"
            ),
            "INSERT INTO t VALUES ($2, $1, $3), ($4, $1, $5) RETURNING x"
        );
    }
}
