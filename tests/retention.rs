//! Issue 14, item 6: the store does not grow without bound. Delivery ids are kept for the
//! redelivery window, finished jobs' transcripts for the job retention, the ledger for the
//! months that are reported — and nothing that is queued, running or still reserved is
//! touched. On SQLite and, when it is set up, PostgreSQL; time is a `ManualClock`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use equitr_coder::llm::ledger::{Ledger, ReservationRequest};
use equitr_coder::llm::pricing::Usd;
use equitr_coder::llm::{AgentRole, Usage};
use equitr_coder::store::{
    month_of, DeliveryOutcome, JobState, LedgerScope, ManualClock, NewJob, Retention, SqlLedger,
    Store,
};
use serde_json::json;
use support::db::{databases, T0};
use support::harness::{on_both_stores, Backend, World};

const LEASE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

fn job(repo: &str) -> NewJob {
    NewJob {
        kind: "implement".into(),
        repo: repo.into(),
        installation_id: 1,
        payload: json!({ "comment": { "body": "x".repeat(2_000) } }),
        dedupe_key: None,
        thread: None,
    }
}

async fn deliver(s: &Store, id: &str, jobs: Vec<NewJob>) -> DeliveryOutcome {
    s.record_delivery(id, "issues", Some("labeled"), Some("o/r"), Some(1), jobs)
        .await
        .unwrap()
}

fn new_ids(o: DeliveryOutcome) -> Vec<i64> {
    match o {
        DeliveryOutcome::New { job_ids, .. } => job_ids,
        DeliveryOutcome::Duplicate => panic!("a duplicate"),
    }
}

/// Claims the next job and finishes it with two transcript events.
async fn run_one(s: &Store) -> i64 {
    let j = s.claim("w", LEASE).await.unwrap().expect("a job to run");
    s.append_event(j.id, "tool", json!({ "n": 1 }))
        .await
        .unwrap();
    s.append_event(j.id, "tool", json!({ "n": 2 }))
        .await
        .unwrap();
    assert!(s.complete(j.id, "w", json!({ "ok": true })).await.unwrap());
    j.id
}

fn ledger(s: &Store, job_id: i64, at: i64) -> SqlLedger {
    SqlLedger::new(
        s.clone(),
        LedgerScope {
            job_id,
            repo: "o/r".into(),
            installation_id: 1,
            per_run_cap: None,
            repo_monthly_cap: None,
            installation_monthly_cap: None,
            month: month_of(at),
        },
    )
    .unwrap()
}

fn req() -> ReservationRequest {
    ReservationRequest {
        role: AgentRole::Worker,
        model: "gpt-4o-mini".into(),
        amount: Usd::from_picos(1_000),
    }
}

fn rows(s: &equitr_coder::store::Storage, table: &str) -> i64 {
    s.rows.iter().find(|(t, _)| *t == table).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_of_rows_is_kept_for_its_retention_and_no_longer() {
    for db in databases().await {
        let clock = Arc::new(ManualClock::new(T0));
        let s = db.store(&clock).await;
        let name = db.name;
        // Small batches, so that every class takes several transactions.
        let keep = Retention {
            batch: 2,
            pause: Duration::ZERO,
            ..Retention::default()
        };
        // Day 0: five deliveries; one job runs up a bill, one is free, the others run too.
        let priced = new_ids(deliver(&s, "d-0", vec![job("o/r")]).await)[0];
        for i in 1..5 {
            deliver(&s, &format!("d-{i}"), vec![job("o/r")]).await;
        }
        assert_eq!(run_one(&s).await, priced);
        let l = ledger(&s, priced, T0);
        let r = l.reserve(req()).await.unwrap();
        l.settle(r, Usd::from_picos(700), Usage::default())
            .await
            .unwrap();
        let free: Vec<i64> = [run_one(&s).await, run_one(&s).await].into();
        // A job still queued, and one whose reservation is still open, from day 0 too.
        let queued = new_ids(deliver(&s, "d-queued", vec![job("o/r")]).await)[0];
        let mut open = 0;
        for _ in 0..2 {
            open = run_one(&s).await;
        }
        ledger(&s, open, T0).reserve(req()).await.unwrap();

        // Day 7: every delivery id is within GitHub's redelivery window; nothing goes.
        clock.advance(7 * DAY);
        assert_eq!(s.prune(&keep).await.unwrap().deliveries, 0, "{name}");
        assert!(matches!(
            deliver(&s, "d-1", vec![job("o/r")]).await,
            DeliveryOutcome::Duplicate
        ));
        deliver(&s, "d-day7", vec![]).await;

        // Day 9: day 0's six ids are gone, day 7's stays; their jobs stay.
        clock.advance(2 * DAY);
        let p = s.prune(&keep).await.unwrap();
        assert_eq!(
            (p.deliveries, p.jobs, p.job_events),
            (6, 0, 0),
            "{name}: {p:?}"
        );
        assert!(matches!(
            deliver(&s, "d-day7", vec![]).await,
            DeliveryOutcome::Duplicate
        ));
        let j = s.job(priced).await.unwrap().unwrap();
        assert_eq!(j.delivery_id, None, "{name}");
        assert_eq!(s.events(priced).await.unwrap().len(), 2, "{name}");

        // Day 91: finished jobs' transcripts go; a job with no ledger rows goes whole, one
        // with ledger rows stays (the month is reported) with its payload emptied.
        clock.advance(82 * DAY);
        let p = s.prune(&keep).await.unwrap();
        assert_eq!(
            (p.jobs, p.jobs_emptied, p.job_events),
            (3, 2, 10),
            "{name}: {p:?}"
        );
        for id in &free {
            assert!(s.job(*id).await.unwrap().is_none(), "{name}: job {id}");
        }
        let j = s.job(priced).await.unwrap().unwrap();
        assert_eq!(
            (j.state, j.payload),
            (JobState::Succeeded, json!({})),
            "{name}"
        );
        assert!(s.events(priced).await.unwrap().is_empty(), "{name}");
        assert_eq!(
            l.job_spend().await.unwrap().spent,
            Usd::from_picos(700),
            "{name}"
        );
        let q = s.job(queued).await.unwrap().unwrap();
        assert_eq!(
            q.state,
            JobState::Queued,
            "{name}: a queued job is never pruned"
        );
        assert_eq!(q.payload["comment"]["body"].as_str().unwrap().len(), 2_000);
        // A second pass finds nothing.
        assert_eq!(s.prune(&keep).await.unwrap(), Default::default(), "{name}");

        // 2027-01-31: January 2026 is the thirteenth month back; it is still reported.
        clock.set(1_801_440_000_000 - 1);
        assert_eq!(s.prune(&keep).await.unwrap().ledger, 0, "{name}");
        // 2027-02-01: it is not. Its settled row goes, and the job with it; the open
        // reservation stays (budgets count it), and so does its job.
        clock.set(1_801_440_000_000);
        let p = s.prune(&keep).await.unwrap();
        assert_eq!((p.ledger, p.jobs), (1, 1), "{name}: {p:?}");
        assert!(s.job(priced).await.unwrap().is_none(), "{name}");
        assert!(s.job(open).await.unwrap().is_some(), "{name}");

        let st = s.storage().await.unwrap();
        assert_eq!(rows(&st, "deliveries"), 0, "{name}");
        assert_eq!(
            rows(&st, "jobs"),
            2,
            "{name}: the queued job and the one with an open reservation"
        );
        assert_eq!(rows(&st, "ledger"), 1, "{name}");
        assert_eq!(rows(&st, "job_events"), 0, "{name}");
        assert!(st.bytes > 0, "{name}");
        s.close().await;
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_keeps_a_class_forever() {
    for db in databases().await {
        let clock = Arc::new(ManualClock::new(T0));
        let s = db.store(&clock).await;
        deliver(&s, "d", vec![job("o/r")]).await;
        run_one(&s).await;
        clock.advance(4000 * DAY);
        let forever = Retention {
            deliveries: None,
            jobs: None,
            ledger_months: None,
            ..Retention::default()
        };
        assert_eq!(
            s.prune(&forever).await.unwrap(),
            Default::default(),
            "{}",
            db.name
        );
        s.close().await;
        db.drop_db().await;
    }
}

// ---- the service ----

on_both_stores!(serve_prunes_at_start_up_and_reports_the_stores_size);
async fn serve_prunes_at_start_up_and_reports_the_stores_size(backend: Backend) {
    let Some(mut t) = World::default().build_on(backend).await else {
        return;
    };
    // Ten days ago the service took a delivery; today one more.
    let now = chrono::Utc::now().timestamp_millis();
    let then = Arc::new(ManualClock::new(now - 10 * 86_400_000));
    let old = Store::connect_with(
        t.db_url(),
        equitr_coder::store::StoreOptions {
            clock: then.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    deliver(&old, "old-delivery", vec![]).await;
    then.set(now);
    deliver(&old, "new-delivery", vec![]).await;
    old.close().await;

    t.start().await;
    let m = t
        .wait_metric("equitr_pruned_rows_total{table=\"deliveries\"} 1")
        .await;
    assert!(
        m.contains("equitr_store_rows{table=\"deliveries\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("equitr_store_rows{table=\"jobs\"} 0\n"), "{m}");
    let bytes: i64 = m
        .lines()
        .find_map(|l| l.strip_prefix("equitr_store_bytes "))
        .expect("the store's size")
        .parse()
        .unwrap();
    assert!(bytes > 0, "{m}");
    // The recent id still makes its redelivery a duplicate.
    let s = t.store().await;
    assert!(matches!(
        deliver(&s, "new-delivery", vec![]).await,
        DeliveryOutcome::Duplicate
    ));
    assert!(matches!(
        deliver(&s, "old-delivery", vec![]).await,
        DeliveryOutcome::New { .. }
    ));
    s.close().await;
    t.finish().await;
}

/// A second read of the pruner found three ways it could delete too much or hold the lock
/// too long; each has its case here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_transcripts_running_jobs_and_rows_settled_after_their_month() {
    for db in databases().await {
        let name = db.name;
        // 2026-01-31 23:59.
        let jan31 = T0 + 30 * 86_400_000 + 23 * 3_600_000 + 59 * 60_000;
        let clock = Arc::new(ManualClock::new(jan31));
        let s = db.store(&clock).await;
        let keep = Retention {
            ledger_months: Some(1),
            pause: Duration::ZERO,
            ..Retention::default()
        };
        // A job with a long transcript, finished.
        deliver(&s, "d-long", vec![job("o/r")]).await;
        let long = s.claim("w", LEASE).await.unwrap().unwrap().id;
        for n in 0..1_234 {
            s.append_event(long, "tool", json!({ "n": n }))
                .await
                .unwrap();
        }
        assert!(s.complete(long, "w", json!({})).await.unwrap());
        // A job that is still running, with a row settled in January.
        deliver(&s, "d-running", vec![job("o/r")]).await;
        let year = Duration::from_secs(400 * 86_400);
        let running = s.claim("w", year).await.unwrap().unwrap().id;
        let l = ledger(&s, running, jan31);
        let r = l.reserve(req()).await.unwrap();
        l.settle(r, Usd::from_picos(300), Usage::default())
            .await
            .unwrap();
        // A job that reserves in January and settles two minutes later, in February.
        deliver(&s, "d-late", vec![job("o/r")]).await;
        let late = s.claim("w", LEASE).await.unwrap().unwrap().id;
        let l = ledger(&s, late, jan31);
        let r = l.reserve(req()).await.unwrap();
        clock.advance(Duration::from_secs(120));
        l.settle(r, Usd::from_picos(500), Usage::default())
            .await
            .unwrap();
        assert!(s.complete(late, "w", json!({})).await.unwrap());

        // February: January is not kept, but the late row settled on a kept day, and the
        // running job's row is its per-run spend.
        let p = s.prune(&keep).await.unwrap();
        assert_eq!(p.ledger, 0, "{name}");
        let size = s.storage().await.unwrap();
        assert_eq!(rows(&size, "ledger"), 2, "{name}");
        // The roll-up keeps February 1 (the late row); January's days go.
        assert_eq!(rows(&size, "ledger_days"), 1, "{name}");

        // Three months on: the transcript goes in several short transactions, all of it.
        clock.advance(91 * DAY);
        let p = s.prune(&keep).await.unwrap();
        assert_eq!(p.job_events, 1_234, "{name}");
        assert_eq!(p.ledger, 1, "{name}: the late row, its day now gone too");
        let size = s.storage().await.unwrap();
        assert_eq!(rows(&size, "job_events"), 0, "{name}");
        assert_eq!(
            rows(&size, "ledger"),
            1,
            "{name}: the running job keeps its row"
        );
        assert_eq!(rows(&size, "ledger_days"), 0, "{name}");
        s.close().await;
        db.drop_db().await;
    }
}

/// A pass that runs out of time says so, and the next one goes on where it stopped: the
/// pruner renews its lease between passes instead of holding one pass open for hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_out_of_time_leaves_the_rest_to_the_next() {
    for db in databases().await {
        let name = db.name;
        let clock = Arc::new(ManualClock::new(T0));
        let s = db.store(&clock).await;
        for i in 0..5 {
            deliver(&s, &format!("d-{i}"), vec![]).await;
        }
        clock.advance(9 * DAY);
        let keep = Retention {
            batch: 2,
            pause: Duration::ZERO,
            pass_budget: Duration::ZERO,
            ..Retention::default()
        };
        let mut passes = Vec::new();
        loop {
            let p = s.prune(&keep).await.unwrap();
            passes.push((p.deliveries, p.more));
            if !p.more {
                break;
            }
        }
        assert_eq!(
            passes,
            [(2, true), (2, true), (1, false)],
            "{name}: one full batch per pass, then the rest"
        );
        s.close().await;
        db.drop_db().await;
    }
}
