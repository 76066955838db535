//! `scripts/bench-pickup`: how soon a queued job starts. Through the real `serve`, each of
//! 40 `/equitr help` comments (a job that calls no model) is posted to an idle service, one at
//! a time, and the job's wait — its claim time less its commit time, both the service's
//! clock — is read from the store. On PostgreSQL a second process shares the store, and the
//! deliveries alternate between the two. Beside it, the round trip of the delivery itself
//! (post to 202) in the same run. Ignored in `cargo test`; the script runs it.

mod support;

use std::time::Instant;

use support::harness::{Backend, World};

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() * 95 / 100], v[v.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-pickup"]
async fn bench_pickup() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(mut t) = World::default().serve_on(backend).await else {
            continue;
        };
        let two = matches!(backend, Backend::Postgres);
        if two {
            t.start_another().await;
        }
        let mut trips = Vec::new();
        for i in 0..40 {
            t.via(if two { i % 2 } else { 0 });
            let at = Instant::now();
            t.comment(1, "/equitr help").await.accepted();
            trips.push(at.elapsed().as_secs_f64() * 1000.0);
            t.next_comment(1).await;
        }
        let waits: Vec<f64> = t
            .store()
            .await
            .queue_waits(40)
            .await
            .unwrap()
            .into_iter()
            .map(|w| w as f64)
            .collect();
        let (w50, w95, wmax) = stats(waits);
        let (t50, _, _) = stats(trips);
        println!(
            "bench-pickup: {backend:?}{}: queue wait median {w50:.0} ms, p95 {w95:.0} ms, max {wmax:.0} ms (the delivery's round trip {t50:.1} ms; the fallback poll is 200 ms)",
            if two { ", two processes" } else { "" }
        );
        t.abandon().await;
    }
}
