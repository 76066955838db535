//! `scripts/bench-storage`: how much the store grows per 1,000 jobs, and what is left of it
//! once the retention has passed. Each job is what a real one leaves: its delivery (the real
//! `issue_comment` fixture, parsed and queued as intake queues it), 20 transcript events of
//! ~600 bytes, and 6 settled ledger rows. Measured on SQLite (pages in use) and, with
//! `EQUITR_TEST_POSTGRES_URL` set, PostgreSQL (`pg_database_size`). Ignored in `cargo test`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use equitr_coder::jobs::QueuedWork;
use equitr_coder::llm::ledger::{Ledger, ReservationRequest};
use equitr_coder::llm::pricing::Usd;
use equitr_coder::llm::{AgentRole, Usage};
use equitr_coder::store::{month_of, LedgerScope, ManualClock, NewJob, Retention, SqlLedger};
use serde_json::json;
use support::db::{databases, T0};

const JOBS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-storage"]
async fn bench_storage() {
    let body = std::fs::read("tests/fixtures/webhooks/issue_comment.created.3.json").unwrap();
    let parsed = equitr_coder::github::webhook::parse_delivery("issue_comment", &body).unwrap();
    let payload = QueuedWork::Event(parsed.event.unwrap()).to_value();
    for db in databases().await {
        let clock = Arc::new(ManualClock::new(T0));
        let s = db.store(&clock).await;
        let before = s.storage().await.unwrap().bytes;
        for i in 0..JOBS {
            let job = NewJob {
                kind: "event".into(),
                repo: "o/r".into(),
                installation_id: 1,
                payload: payload.clone(),
                dedupe_key: None,
                thread: None,
            };
            s.record_delivery(
                &format!("{i:08x}-delivery"),
                "issue_comment",
                Some("created"),
                Some("o/r"),
                Some(1),
                vec![job],
            )
            .await
            .unwrap();
            let j = s
                .claim("w", Duration::from_secs(60))
                .await
                .unwrap()
                .unwrap();
            for e in 0..20 {
                s.append_event(j.id, "tool", json!({ "n": e, "output": "x".repeat(560) }))
                    .await
                    .unwrap();
            }
            let l = SqlLedger::new(
                s.clone(),
                LedgerScope {
                    job_id: j.id,
                    repo: "o/r".into(),
                    installation_id: 1,
                    per_run_cap: None,
                    repo_monthly_cap: None,
                    installation_monthly_cap: None,
                    month: month_of(T0),
                },
            )
            .unwrap();
            for _ in 0..6 {
                let r = l
                    .reserve(ReservationRequest {
                        role: AgentRole::Worker,
                        model: "gpt-4o-mini".into(),
                        amount: Usd::from_picos(1_000_000),
                    })
                    .await
                    .unwrap();
                l.settle(r, Usd::from_picos(400_000), Usage::default())
                    .await
                    .unwrap();
            }
            s.complete(j.id, "w", json!({ "ok": true })).await.unwrap();
        }
        let grown = s.storage().await.unwrap().bytes;
        // Past the job retention: transcripts and payloads go, the ledger's month stays.
        clock.advance(Duration::from_secs(91 * 86_400));
        let at = std::time::Instant::now();
        let p = s.prune(&Retention::default()).await.unwrap();
        let took = at.elapsed();
        let after = s.storage().await.unwrap();
        let kib = |b: i64| b as f64 / 1024.0;
        println!(
            "bench-storage {}: {JOBS} jobs grew the store by {:.0} KiB ({:.1} KiB per job); pruning {} job events and {} deliveries took {:.0} ms; rows then {:?}; the store holds {:.0} KiB more than empty (the ledger's reported months and the emptied jobs it points at){}",
            db.name,
            kib(grown - before),
            kib(grown - before) / JOBS as f64,
            p.job_events,
            p.deliveries,
            took.as_secs_f64() * 1000.0,
            after.rows,
            kib(after.bytes - before),
            if db.name == "postgres" { "; PostgreSQL reuses the space after VACUUM, the size does not shrink" } else { "; SQLite reuses the freed pages" },
        );
        s.close().await;
        db.drop_db().await;
    }
}
