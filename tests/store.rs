//! The store against real databases: every case runs on SQLite (a temp file) and, when
//! `EQUITR_TEST_POSTGRES_URL` is set, on PostgreSQL in a database of its own
//! (`scripts/ci-postgres` prints the line to set). Two `Store`s on one database play two
//! `serve` processes; time is a shared `ManualClock`, so nothing sleeps.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use equitr_coder::llm::ledger::{BudgetError, Ledger, ReservationRequest};
use equitr_coder::llm::pricing::Usd;
use equitr_coder::llm::{AgentRole, Usage};
use equitr_coder::store::{
    month_of, DeliveryOutcome, JobState, LedgerScope, ManualClock, NewJob, SqlLedger, Store,
    StoreError, StoreOptions,
};
use serde_json::json;
use support::db::{databases, T0};

const LEASE: Duration = Duration::from_secs(60);

/// Runs `case` on every database with a fresh clock at `T0`.
macro_rules! each_db {
    (|$db:ident, $clock:ident| $body:block) => {
        for $db in databases().await {
            let $clock = Arc::new(ManualClock::new(T0));
            eprintln!("-- {}", $db.name);
            $body
            $db.drop_db().await;
        }
    };
}

fn job(kind: &str, repo: &str, installation: i64) -> NewJob {
    NewJob {
        kind: kind.into(),
        repo: repo.into(),
        installation_id: installation,
        payload: json!({ "kind": kind, "repo": repo }),
        dedupe_key: None,
        thread: None,
    }
}

async fn enqueue(store: &Store, delivery: &str, jobs: Vec<NewJob>) -> Vec<i64> {
    match store
        .record_delivery(
            delivery,
            "issues",
            Some("labeled"),
            Some("o/r"),
            Some(1),
            jobs,
        )
        .await
        .unwrap()
    {
        DeliveryOutcome::New { job_ids, .. } => job_ids,
        DeliveryOutcome::Duplicate => panic!("unexpected duplicate {delivery}"),
    }
}

async fn count(store: &Store, state: JobState) -> i64 {
    store
        .jobs_by_state()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.state == state)
        .map(|c| c.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_delivery_creates_one_set_of_jobs() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        let ids = enqueue(
            &a,
            "d-1",
            vec![job("implement", "o/r", 1), job("review", "o/r", 1)],
        )
        .await;
        assert_eq!(ids.len(), 2);
        let again = a
            .record_delivery(
                "d-1",
                "issues",
                None,
                None,
                None,
                vec![job("implement", "o/r", 1)],
            )
            .await
            .unwrap();
        assert_eq!(again, DeliveryOutcome::Duplicate);

        // The same delivery racing through two processes: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                s.record_delivery("d-2", "issues", None, None, None, vec![job("x", "o/r", 1)])
                    .await
                    .unwrap()
            }));
        }
        let mut new = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), DeliveryOutcome::New { .. }) {
                new += 1;
            }
        }
        assert_eq!(new, 1, "{}", db.name);
        assert_eq!(count(&a, JobState::Queued).await, 3);

        // A live dedupe key is not queued twice; once the job finished it can be again.
        let keyed = || NewJob {
            dedupe_key: Some("issue-7".into()),
            ..job("implement", "o/r", 1)
        };
        let first = enqueue(&a, "d-3", vec![keyed()]).await;
        let second = a
            .record_delivery("d-4", "issues", None, None, None, vec![keyed()])
            .await
            .unwrap();
        assert_eq!(
            second,
            DeliveryOutcome::New {
                job_ids: vec![],
                deduplicated: vec!["issue-7".into()]
            }
        );
        let j = a.job(first[0]).await.unwrap().unwrap();
        assert_eq!(j.dedupe_key.as_deref(), Some("issue-7"));
        a.close().await;
        b.close().await;
    });
}

/// Concurrent deliveries share transactions (group commit); duplicates, also inside one batch
/// and across two processes, still create exactly one set of jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_with_duplicates_are_recorded_exactly_once() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        const IDS: usize = 150;
        let mut tasks = Vec::new();
        // Each id three times, twice through `a` back to back (likely one batch), once via `b`.
        for copy in 0..3 {
            for n in 0..IDS {
                let s = if copy == 2 { b.clone() } else { a.clone() };
                tasks.push(tokio::spawn(async move {
                    let id = format!("burst-{n}");
                    let outcome = s
                        .record_delivery(&id, "issues", None, None, None, vec![job("x", "o/r", 1)])
                        .await
                        .unwrap();
                    (n, outcome)
                }));
            }
        }
        let mut new = vec![0; IDS];
        let mut job_ids = HashSet::new();
        for t in tasks {
            let (n, outcome) = t.await.unwrap();
            match outcome {
                DeliveryOutcome::New { job_ids: ids, .. } => {
                    new[n] += 1;
                    assert_eq!(ids.len(), 1);
                    assert!(job_ids.insert(ids[0]), "job id {} twice", ids[0]);
                }
                DeliveryOutcome::Duplicate => {}
            }
        }
        assert!(new.iter().all(|&c| c == 1), "{}: {new:?}", db.name);
        assert_eq!(count(&a, JobState::Queued).await, IDS as i64, "{}", db.name);
        for id in job_ids {
            let j = a.job(id).await.unwrap().unwrap();
            assert!(j.delivery_id.unwrap().starts_with("burst-"));
        }
        a.close().await;
        b.close().await;
    });
}

/// Deliveries racing with one dedupe key, most of them in one group-committed batch: exactly
/// one job is queued, every other delivery is `New` with the key reported as deduplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_dedupe_key_in_a_burst_queues_one_job() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let mut tasks = Vec::new();
        for n in 0..40 {
            let s = a.clone();
            tasks.push(tokio::spawn(async move {
                let jobs = vec![
                    NewJob {
                        dedupe_key: Some("issue-9".into()),
                        ..job("implement", "o/r", 1)
                    },
                    job("plain", "o/r", 1),
                ];
                s.record_delivery(&format!("k-{n}"), "issues", None, None, None, jobs)
                    .await
                    .unwrap()
            }));
        }
        let (mut queued, mut deduplicated, mut plain) = (0, 0, HashSet::new());
        for t in tasks {
            match t.await.unwrap() {
                DeliveryOutcome::New {
                    job_ids,
                    deduplicated: d,
                } => {
                    queued += job_ids.len() - 1;
                    deduplicated += d.len();
                    assert!(d.iter().all(|k| k == "issue-9"), "{d:?}");
                    let last = *job_ids.last().unwrap();
                    assert_eq!(a.job(last).await.unwrap().unwrap().kind, "plain");
                    assert!(plain.insert(last));
                }
                DeliveryOutcome::Duplicate => panic!("no id was repeated"),
            }
        }
        assert_eq!((queued, deduplicated), (1, 39), "{}", db.name);
        assert_eq!(count(&a, JobState::Queued).await, 41, "{}", db.name);
        a.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_heartbeat_complete() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        assert!(s.claim("w1", LEASE).await.unwrap().is_none());
        let ids = enqueue(
            &s,
            "d",
            vec![job("implement", "o/r", 1), job("review", "o/r", 1)],
        )
        .await;
        s.ping().await.unwrap();

        let c = s.claim("w1", LEASE).await.unwrap().unwrap();
        assert_eq!(c.id, ids[0], "oldest first");
        assert_eq!(c.attempt, 1);
        assert_eq!(c.kind, "implement");
        assert_eq!(c.payload, json!({ "kind": "implement", "repo": "o/r" }));
        assert_eq!(c.lease_expires_at, T0 + 60_000);

        clock.advance(Duration::from_secs(50));
        assert!(s.heartbeat(c.id, "w1", LEASE).await.unwrap());
        assert!(!s.heartbeat(c.id, "someone-else", LEASE).await.unwrap());
        let j = s.job(c.id).await.unwrap().unwrap();
        assert_eq!(j.lease_expires_at, Some(T0 + 110_000));
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.lease_owner.as_deref(), Some("w1"));

        // Past the original lease but within the extended one: nobody else can take it.
        clock.advance(Duration::from_secs(30));
        let other = s.claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!(other.id, ids[1]);
        assert!(s.claim("w3", LEASE).await.unwrap().is_none());

        assert!(s.complete(c.id, "w1", json!({ "pr": 12 })).await.unwrap());
        assert!(
            !s.complete(c.id, "w1", json!({})).await.unwrap(),
            "only once"
        );
        let j = s.job(c.id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Succeeded);
        assert_eq!(j.result, Some(json!({ "pr": 12 })));
        assert_eq!(j.finished_at, Some(T0 + 80_000));
        assert!(!s.heartbeat(c.id, "w1", LEASE).await.unwrap());

        assert!(s.fail(other.id, "w2", "the model refused").await.unwrap());
        let j = s.job(other.id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.error.as_deref(), Some("the model refused"));
        assert!(s.job(9999).await.unwrap().is_none());
        assert_eq!(count(&s, JobState::Succeeded).await, 1);
        assert_eq!(count(&s, JobState::Failed).await, 1);
        s.close().await;
    });
}

/// Issue 9, item 9: jobs of one thread (an issue, a pull request, a schedule's branch) run
/// one at a time, in order, across processes (two `Store`s); other threads' jobs go on. A
/// running job whose lease expired does not hold its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_of_one_thread_are_claimed_one_at_a_time_across_processes() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        let on = |thread: &str| NewJob {
            thread: Some(thread.into()),
            ..job("event", "o/r", 1)
        };
        let ids = enqueue(
            &a,
            "t1",
            vec![
                on("o/r#7"),
                on("o/r#7"),
                on("o/r#8"),
                job("event", "o/r", 1),
            ],
        )
        .await;
        let first = a.claim("proc-a", LEASE).await.unwrap().unwrap();
        assert_eq!(first.id, ids[0]);
        // The second job of #7 waits; the other process takes #8, then the thread-less job.
        let second = b.claim("proc-b", LEASE).await.unwrap().unwrap();
        assert_eq!(second.id, ids[2]);
        let third = b.claim("proc-b", LEASE).await.unwrap().unwrap();
        assert_eq!(third.id, ids[3]);
        assert!(b.claim("proc-b", LEASE).await.unwrap().is_none());
        // Two claimers racing for the waiting job: neither gets it while #7 runs.
        let (x, y) = tokio::join!(a.claim("proc-a", LEASE), b.claim("proc-b", LEASE));
        assert!(x.unwrap().is_none() && y.unwrap().is_none());
        assert!(a.complete(first.id, "proc-a", json!({})).await.unwrap());
        let (x, y) = tokio::join!(a.claim("proc-a", LEASE), b.claim("proc-b", LEASE));
        let got: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[1]]);
        assert!(a
            .complete(ids[1], &got[0].lease_owner, json!({}))
            .await
            .unwrap());
        assert!(b.complete(ids[3], "proc-b", json!({})).await.unwrap());
        // A stalled owner's thread is free once its lease is gone.
        let more = enqueue(&a, "t2", vec![on("o/r#8")]).await;
        assert!(a.claim("proc-a", LEASE).await.unwrap().is_none());
        clock.advance(LEASE + Duration::from_millis(1));
        let next = a.claim("proc-a", LEASE).await.unwrap().unwrap();
        // The older, expired job of #8 comes back first; #8's new job waits behind it.
        assert_eq!(next.id, second.id);
        assert_eq!(b.claim("proc-b", LEASE).await.unwrap().map(|j| j.id), None);
        assert!(a.complete(next.id, "proc-a", json!({})).await.unwrap());
        assert_eq!(
            b.claim("proc-b", LEASE).await.unwrap().map(|j| j.id),
            Some(more[0])
        );
        a.close().await;
        b.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_lease_is_reclaimed_and_the_old_owner_refused() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        let id = enqueue(&a, "d", vec![job("implement", "o/r", 1)]).await[0];
        let first = a.claim("proc-a", LEASE).await.unwrap().unwrap();

        // proc-a reserves budget, then stalls past its lease.
        let scope = |job_id| LedgerScope {
            job_id,
            repo: "o/r".into(),
            installation_id: 1,
            per_run_cap: Some(Usd::from_picos(1_000)),
            repo_monthly_cap: None,
            installation_monthly_cap: None,
            month: month_of(T0),
        };
        let la = SqlLedger::new(a.clone(), scope(id)).unwrap();
        let r = la.reserve(req(300)).await.unwrap();

        clock.advance(LEASE + Duration::from_millis(1));
        let second = b.claim("proc-b", LEASE).await.unwrap().unwrap();
        assert_eq!(second.id, first.id);
        assert_eq!(second.attempt, 2);

        assert!(!a.heartbeat(id, "proc-a", LEASE).await.unwrap());
        assert!(!a.complete(id, "proc-a", json!({})).await.unwrap());
        assert!(!a.fail(id, "proc-a", "x").await.unwrap());
        assert!(!a.release(id, "proc-a").await.unwrap());

        // The orphaned reservation still counts against the run: it may have been billed.
        let lb = SqlLedger::new(b.clone(), scope(id)).unwrap();
        assert_eq!(lb.job_spend().await.unwrap().spent, Usd::from_picos(300));
        assert!(lb.reserve(req(701)).await.is_err());
        // The stalled owner's late settle replaces the held amount by the real cost.
        la.settle(r, Usd::from_picos(100), Usage::default())
            .await
            .unwrap();
        assert_eq!(lb.spent().await, Usd::from_picos(100));
        lb.reserve(req(900)).await.unwrap();

        assert!(b
            .complete(id, "proc-b", json!({ "ok": true }))
            .await
            .unwrap());
        assert_eq!(b.job(id).await.unwrap().unwrap().state, JobState::Succeeded);
        a.close().await;
        b.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exhausted_attempts_fail_the_job_once() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        let id = enqueue(&a, "d", vec![job("implement", "o/r", 1)]).await[0];
        for attempt in 1..=3 {
            let c = a
                .claim(&format!("w{attempt}"), LEASE)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((c.id, c.attempt), (id, attempt));
            assert!(a.take_exhausted().await.unwrap().is_empty());
            clock.advance(LEASE);
        }
        // Three leases expired: not claimed a fourth time.
        assert!(a.claim("w4", LEASE).await.unwrap().is_none());
        let (x, y) = tokio::join!(a.take_exhausted(), b.take_exhausted());
        let mut taken = x.unwrap();
        taken.extend(y.unwrap());
        assert_eq!(taken.len(), 1, "handed to exactly one caller");
        assert_eq!(taken[0].id, id);
        assert_eq!(taken[0].error, "lease expired 3 times");
        assert_eq!(taken[0].attempts, 3);
        assert!(a.take_exhausted().await.unwrap().is_empty());
        let j = a.job(id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.error.as_deref(), Some("lease expired 3 times"));
        assert!(!a.heartbeat(id, "w3", LEASE).await.unwrap());
        let events = a.events(id).await.unwrap();
        assert_eq!(events.last().unwrap().kind, "failed");
        a.close().await;
        b.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_on_shutdown_does_not_count_the_attempt() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        let id = enqueue(&s, "d", vec![job("implement", "o/r", 1)]).await[0];
        for _ in 0..5 {
            let c = s.claim("w", LEASE).await.unwrap().unwrap();
            assert_eq!(c.attempt, 1);
            assert!(s.release(id, "w").await.unwrap());
            let j = s.job(id).await.unwrap().unwrap();
            assert_eq!((j.state, j.attempts), (JobState::Queued, 0));
            assert_eq!(j.lease_owner, None);
        }
        assert!(!s.release(id, "w").await.unwrap(), "not running any more");
        let c = s.claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!((c.id, c.attempt), (id, 1));
        s.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_never_claim_the_same_job() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        let mut all = Vec::new();
        for i in 0..5 {
            let jobs = (0..10).map(|_| job("review", "o/r", 1)).collect();
            all.extend(enqueue(&a, &format!("d{i}"), jobs).await);
        }
        assert_eq!(all.len(), 50);

        // Four claimers per process, each looping until the queue looks empty three times.
        let mut tasks = Vec::new();
        for p in 0..2 {
            for w in 0..4 {
                let s = if p == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    let me = format!("p{p}-w{w}");
                    let (mut got, mut empty) = (Vec::new(), 0);
                    while empty < 3 {
                        match s.claim(&me, LEASE).await.unwrap() {
                            Some(c) => {
                                empty = 0;
                                got.push(c.id);
                                assert!(s.complete(c.id, &me, json!(null)).await.unwrap());
                            }
                            None => {
                                empty += 1;
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    got
                }));
            }
        }
        let mut claimed = Vec::new();
        for t in tasks {
            claimed.extend(t.await.unwrap());
        }
        let unique: HashSet<_> = claimed.iter().copied().collect();
        assert_eq!(
            claimed.len(),
            unique.len(),
            "{}: a job was claimed twice",
            db.name
        );
        assert_eq!(unique, all.iter().copied().collect(), "{}", db.name);
        assert_eq!(count(&a, JobState::Succeeded).await, 50);
        a.close().await;
        b.close().await;
    });
}

fn req(picos: u64) -> ReservationRequest {
    ReservationRequest {
        role: AgentRole::Worker,
        model: "gpt-4o-mini".into(),
        amount: Usd::from_picos(picos),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_never_exceeds_a_cap_with_concurrent_reservers() {
    each_db!(|db, clock| {
        let a = db.store(&clock).await;
        let b = db.store(&clock).await;
        let jobs = (0..20)
            .map(|i| job("implement", if i % 2 == 0 { "o/a" } else { "o/b" }, 7))
            .collect();
        let ids = enqueue(&a, "d", jobs).await;
        let month = month_of(T0);
        let cap = Usd::from_picos(7_000);

        let mut tasks = Vec::new();
        for (i, id) in ids.iter().copied().enumerate() {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let scope = LedgerScope {
                job_id: id,
                repo: if i % 2 == 0 { "o/a" } else { "o/b" }.into(),
                installation_id: 7,
                per_run_cap: None,
                repo_monthly_cap: None,
                installation_monthly_cap: Some(cap),
                month: month.clone(),
            };
            let ledger = SqlLedger::new(store, scope).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                // Each reserver tries three calls; settles at the full amount.
                for _ in 0..3 {
                    match ledger.reserve(req(1_000)).await {
                        Ok(r) => {
                            ok += 1;
                            ledger
                                .settle(r, Usd::from_picos(1_000), Usage::default())
                                .await
                                .unwrap();
                        }
                        Err(BudgetError::Exceeded {
                            cap: c, committed, ..
                        }) => {
                            assert_eq!(c, cap);
                            assert!(committed <= cap);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        assert_eq!(ok, 7, "{}", db.name);
        let spend = a.installation_month_spend(7, &month).await.unwrap();
        assert_eq!(spend.spent, cap);
        assert_eq!(spend.committed, cap);
        let by_repo = a.month_spend("o/a", &month).await.unwrap().spent.picos()
            + a.month_spend("o/b", &month).await.unwrap().spent.picos();
        assert_eq!(by_repo, 7_000);
        a.close().await;
        b.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repo_cap_refuses_while_another_repo_spends_up_to_the_installation_cap() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        let ids = enqueue(
            &s,
            "d",
            vec![job("implement", "o/a", 3), job("implement", "o/b", 3)],
        )
        .await;
        let month = month_of(T0);
        assert_eq!(month, "2026-01");
        let scope = |job_id, repo: &str| LedgerScope {
            job_id,
            repo: repo.into(),
            installation_id: 3,
            per_run_cap: Some(Usd::from_picos(100_000)),
            repo_monthly_cap: Some(Usd::from_picos(10_000)),
            installation_monthly_cap: Some(Usd::from_picos(15_000)),
            month: month.clone(),
        };
        let la = SqlLedger::new(s.clone(), scope(ids[0], "o/a")).unwrap();
        let lb = SqlLedger::new(s.clone(), scope(ids[1], "o/b")).unwrap();

        let r = la.reserve(req(6_000)).await.unwrap();
        // Outstanding reservations count: 6,000 held + 5,000 > 10,000.
        let err = la.reserve(req(5_000)).await.unwrap_err();
        assert_eq!(
            err,
            BudgetError::Exceeded {
                cap: Usd::from_picos(10_000),
                committed: Usd::from_picos(6_000),
                requested: Usd::from_picos(5_000)
            }
        );
        la.settle(
            r,
            Usd::from_picos(4_000),
            Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
        )
        .await
        .unwrap();
        let r = la.reserve(req(6_000)).await.unwrap(); // lands exactly on the cap
        la.settle(r, Usd::from_picos(6_000), Usage::default())
            .await
            .unwrap();
        assert!(matches!(
            la.reserve(req(1)).await,
            Err(BudgetError::Exceeded { cap, .. }) if cap == Usd::from_picos(10_000)
        ));

        // The other repository still spends, until the installation's 15,000 — below its own
        // repo cap.
        let r = lb.reserve(req(1_000)).await.unwrap();
        lb.release(r).await.unwrap();
        let r = lb.reserve(req(5_000)).await.unwrap();
        lb.settle(r, Usd::from_picos(5_000), Usage::default())
            .await
            .unwrap();
        assert_eq!(
            lb.reserve(req(1)).await.unwrap_err(),
            BudgetError::Exceeded {
                cap: Usd::from_picos(15_000),
                committed: Usd::from_picos(15_000),
                requested: Usd::from_picos(1)
            }
        );
        // Next month is a fresh budget for the repo and the installation.
        let next = SqlLedger::new(
            s.clone(),
            LedgerScope {
                month: "2026-02".into(),
                ..scope(ids[0], "o/a")
            },
        )
        .unwrap();
        next.reserve(req(10_000)).await.unwrap();

        assert_eq!(
            s.month_spend("o/a", &month).await.unwrap().spent,
            Usd::from_picos(10_000)
        );
        assert_eq!(
            s.month_spend("o/b", &month).await.unwrap().spent,
            Usd::from_picos(5_000)
        );
        assert_eq!(
            s.installation_month_spend(3, &month)
                .await
                .unwrap()
                .committed,
            Usd::from_picos(15_000)
        );
        let entries = la.entries().await;
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].cost, Usd::from_picos(4_000));
        assert_eq!(entries[0].usage.input_tokens, 10);
        assert_eq!(entries[0].role, AgentRole::Worker);
        assert_eq!(la.spent().await, Usd::from_picos(10_000));
        assert_eq!(
            next.committed().await,
            Usd::from_picos(20_000),
            "the run spans months"
        );

        // An amount the database cannot hold is an error, not a wrap-around.
        assert!(matches!(
            la.reserve(req(u64::MAX)).await,
            Err(BudgetError::Store(_))
        ));
        assert!(SqlLedger::new(
            s.clone(),
            LedgerScope {
                month: "2026-13".into(),
                ..scope(ids[0], "o/a")
            }
        )
        .is_err());
        s.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_kept_in_order() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        let ids = enqueue(
            &s,
            "d",
            vec![job("implement", "o/r", 1), job("review", "o/r", 1)],
        )
        .await;
        for i in 0..20 {
            clock.advance(Duration::from_millis(1));
            s.append_event(ids[i % 2], "step", json!({ "n": i }))
                .await
                .unwrap();
        }
        let events = s.events(ids[0]).await.unwrap();
        let ns: Vec<_> = events
            .iter()
            .map(|e| e.data["n"].as_i64().unwrap())
            .collect();
        assert_eq!(ns, (0..20).step_by(2).collect::<Vec<_>>());
        assert!(events
            .iter()
            .all(|e| e.job_id == ids[0] && e.kind == "step"));
        assert!(events.windows(2).all(|w| w[0].created_at < w[1].created_at));
        assert!(s.events(9999).await.unwrap().is_empty());
        // An event for a job that does not exist is refused (foreign key).
        assert!(s.append_event(9999, "step", json!({})).await.is_err());
        s.close().await;
    });
}

#[tokio::test]
async fn bad_urls_are_one_line_errors_without_the_password() {
    let opts = || StoreOptions {
        timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let mut urls = vec![
        "postgres://equitr:hunter2-secret@127.0.0.1:1/db".to_string(),
        "postgres://127.0.0.1:1/db?user=u&password=hunter2-secret".to_string(),
        "mysql://root:hunter2-secret@localhost/db".to_string(),
        "sqlite:///nonexistent-dir/hunter2-secret/x.db".to_string(),
    ];
    // A live server refusing the password must not echo it either.
    if let Ok(admin) = std::env::var("EQUITR_TEST_POSTGRES_URL") {
        if let Some((_, host)) = admin.rsplit_once('@') {
            urls.push(format!("postgres://equitr:hunter2-wrong@{host}"));
        }
    }
    for url in urls {
        let url = url.as_str();
        let err = Store::connect_with(url, opts()).await.unwrap_err();
        let msg = err.to_string();
        eprintln!("{url} -> {msg}");
        assert!(!msg.contains('\n'), "{msg}");
        if !url.starts_with("sqlite") {
            assert!(!msg.contains("hunter2"), "{msg}");
        }
        match url.split(':').next() {
            Some("mysql") => assert!(matches!(err, StoreError::InvalidUrl { .. }), "{msg}"),
            _ => assert!(matches!(err, StoreError::Connect { .. }), "{msg}"),
        }
    }
}

/// The dashboard's daily spend (`ledger_days`, kept by triggers) agrees with the ledger after
/// every kind of change: settled calls, released ones, a reservation that expired with its
/// process and was settled later at its real cost, and a row deleted by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_spend_follows_every_ledger_change() {
    each_db!(|db, clock| {
        let store = db.store(&clock).await;
        let ids = enqueue(&store, "d", vec![job("implement", "o/a", 7)]).await;
        let scope = LedgerScope {
            job_id: ids[0],
            repo: "o/a".into(),
            installation_id: 7,
            per_run_cap: None,
            repo_monthly_cap: None,
            installation_monthly_cap: None,
            month: month_of(T0),
        };
        let ledger = SqlLedger::new(store.clone(), scope).unwrap();
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 10,
            ..Usage::default()
        };
        let r = ledger.reserve(req(5_000)).await.unwrap();
        ledger
            .settle(r, Usd::from_picos(3_000), usage)
            .await
            .unwrap();
        let r = ledger.reserve(req(5_000)).await.unwrap();
        ledger.release(r).await.unwrap();
        let orphan = ledger.reserve(req(9_000)).await.unwrap();
        let day = |store: &Store| {
            let store = store.clone();
            async move {
                store
                    .daily_spend(T0 - 86_400_000)
                    .await
                    .unwrap()
                    .iter()
                    .map(|d| (d.day, d.cost_picos, d.input_tokens))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            day(&store).await,
            vec![(T0 / 86_400_000, 3_000, 100)],
            "{}",
            db.name
        );

        // The process dies: the reservation expires at its full amount, then its owner
        // settles it at the real cost the next day.
        let pool_url = db.url.clone();
        let exec = |sql: &'static str| {
            let url = pool_url.clone();
            async move {
                if url.starts_with("postgres") {
                    let pool = sqlx::PgPool::connect(&url).await.unwrap();
                    sqlx::query(sql).execute(&pool).await.unwrap();
                    pool.close().await;
                } else {
                    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                    sqlx::query(sql).execute(&pool).await.unwrap();
                    pool.close().await;
                }
            }
        };
        exec("UPDATE ledger SET state = 'expired', cost_picos = reserved_picos, settled_at = created_at WHERE state = 'reserved'").await;
        assert_eq!(
            day(&store).await,
            vec![(T0 / 86_400_000, 12_000, 100)],
            "{}",
            db.name
        );
        clock.advance(Duration::from_secs(86_400));
        ledger
            .settle(orphan, Usd::from_picos(4_000), usage)
            .await
            .unwrap();
        assert_eq!(
            day(&store).await,
            vec![
                (T0 / 86_400_000, 3_000, 100),
                (T0 / 86_400_000 + 1, 4_000, 100)
            ],
            "{}",
            db.name
        );
        exec("DELETE FROM ledger WHERE cost_picos = 3000").await;
        assert_eq!(
            day(&store).await,
            vec![(T0 / 86_400_000, 0, 0), (T0 / 86_400_000 + 1, 4_000, 100)],
            "{}",
            db.name
        );
        store.close().await;
    });
}

/// Issue 14: one installation's 10,000 queued jobs do not starve another's one job — it is
/// claimed in the next free slot — and an installation at its cap waits while others run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_installation_cannot_starve_another() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        let storm: Vec<NewJob> = (0..10_000)
            .map(|_| job("implement", "big/mono", 1))
            .collect();
        enqueue(&s, "storm", storm).await;
        let other = enqueue(&s, "quiet", vec![job("ask", "small/app", 2)]).await[0];
        let first = s.claim_fair("w1", LEASE, Some(2)).await.unwrap().unwrap();
        assert_eq!(
            first.installation_id, 1,
            "{}: the oldest job first",
            db.name
        );
        let second = s.claim_fair("w2", LEASE, Some(2)).await.unwrap().unwrap();
        assert_eq!(
            second.id, other,
            "{}: the other installation's job is next, not after the 10,000",
            db.name
        );
        // Installation 1 may run two at once: a second of its jobs, then nothing.
        let third = s.claim_fair("w3", LEASE, Some(2)).await.unwrap().unwrap();
        assert_eq!(third.installation_id, 1, "{}", db.name);
        assert!(
            s.claim_fair("w4", LEASE, Some(2)).await.unwrap().is_none(),
            "{}: installation 1 is at its cap",
            db.name
        );
        // One of its jobs ends: the slot is its own again.
        assert!(s.complete(first.id, "w1", json!({})).await.unwrap());
        let fourth = s.claim_fair("w1", LEASE, Some(2)).await.unwrap().unwrap();
        assert_eq!(fourth.installation_id, 1, "{}", db.name);
        // Without a cap every free worker gets one.
        assert!(s.claim("w5", LEASE).await.unwrap().is_some(), "{}", db.name);
        s.close().await;
    });
}

/// Among installations that all run jobs, the one running the fewest goes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installation_running_the_fewest_jobs_goes_first() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        let a: Vec<NewJob> = (0..3).map(|_| job("implement", "o/a", 1)).collect();
        enqueue(&s, "a", a).await;
        enqueue(&s, "b", vec![job("ask", "o/b", 2), job("ask", "o/b", 2)]).await;
        let mut claimed = Vec::new();
        for w in ["w1", "w2", "w3", "w4"] {
            let c = s.claim_fair(w, LEASE, Some(5)).await.unwrap().unwrap();
            claimed.push(c.installation_id);
        }
        // 1 (oldest), 2 (nothing running), 1 and 2 tied at one each → the older job (1's),
        // then 2 (one running against two).
        assert_eq!(claimed, vec![1, 2, 1, 2], "{}", db.name);
        s.close().await;
    });
}

/// `scripts/bench-claims`: claims per second with 10,000 installations' jobs queued (one job
/// each, and then one installation's 10,000), each claim followed by its job's completion,
/// against the completions alone in the same run (the floor of a write transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-claims"]
async fn bench_claims_across_installations() {
    each_db!(|db, clock| {
        let s = db.store(&clock).await;
        for (name, installations) in [("10,000 installations", 10_000), ("one installation", 1)] {
            let jobs: Vec<NewJob> = (0..10_000)
                .map(|i| job("ask", "o/r", 1_000 + i % installations))
                .collect();
            enqueue(&s, &format!("bench-{installations}"), jobs).await;
            let n = 2_000;
            let (mut claiming, mut completing) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..n {
                let t = std::time::Instant::now();
                let c = s.claim_fair("w", LEASE, Some(2)).await.unwrap().unwrap();
                claiming += t.elapsed();
                let t = std::time::Instant::now();
                assert!(s.complete(c.id, "w", json!({})).await.unwrap());
                completing += t.elapsed();
            }
            println!(
                "bench-claims: {}, {name}: {:.0} claims/s ({:.2} ms each), a completion {:.2} ms: a claim costs {:.1}x a completion",
                db.name,
                n as f64 / claiming.as_secs_f64(),
                claiming.as_secs_f64() * 1000.0 / n as f64,
                completing.as_secs_f64() * 1000.0 / n as f64,
                claiming.as_secs_f64() / completing.as_secs_f64()
            );
            // Drain the rest so the next round starts from an empty queue.
            while let Some(c) = s.claim("w", LEASE).await.unwrap() {
                s.complete(c.id, "w", json!({})).await.unwrap();
            }
        }
        s.close().await;
    });
}
