//! `equitr-coder serve` at its edges: settings that stop start-up, a database outage, a
//! burst of deliveries, GitHub out of reach.

mod support;

use std::time::Duration;

use serde_json::json;
use support::github::FakeGitHub;
use support::harness::{dead_port, Backend, Ended, World, REPO, SECRET};
use support::llm_server::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_invalid_setting_stops_start_up_with_one_line_naming_it() {
    let gh = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<(String, String)> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", dir.path().display().to_string()),
        ("OPENAI_API_KEY", "sk-test-serve".into()),
        ("GITHUB_APP_ID", gh.app_id().to_string()),
        ("GITHUB_PRIVATE_KEY", gh.private_key_pem()),
        ("GITHUB_WEBHOOK_SECRET", SECRET.into()),
        ("GITHUB_API_URL", gh.api_url()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/equitr.db", dir.path().display()),
        ),
        ("EQUITR_LISTEN", "127.0.0.1:0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("GITHUB_APP_ID", None, "GITHUB_APP_ID: not set"),
        (
            "GITHUB_APP_ID",
            Some("my-app".into()),
            "GITHUB_APP_ID: `my-app` is not a number",
        ),
        ("GITHUB_PRIVATE_KEY", None, "GITHUB_PRIVATE_KEY: not set"),
        (
            "GITHUB_PRIVATE_KEY",
            Some("not a key".into()),
            "GITHUB_PRIVATE_KEY: ",
        ),
        ("GITHUB_WEBHOOK_SECRET", None, "GITHUB_WEBHOOK_SECRET: "),
        (
            "OPENAI_API_KEY",
            None,
            "OPENAI_API_KEY: not set: the worker model `gpt-4o-mini`",
        ),
        (
            "DATABASE_URL",
            Some("mysql://db/equitr".into()),
            "DATABASE_URL: ",
        ),
        ("EQUITR_LISTEN", Some("nowhere".into()), "EQUITR_LISTEN: "),
        (
            "EQUITR_JOB_LEASE_SECS",
            Some("soon".into()),
            "EQUITR_JOB_LEASE_SECS: ",
        ),
        // Shorter than GitHub's redelivery window: a redelivery would run its jobs twice.
        (
            "EQUITR_DELIVERY_RETENTION_DAYS",
            Some("2".into()),
            "EQUITR_DELIVERY_RETENTION_DAYS: `2` is not a number of days, at least 3",
        ),
        (
            "EQUITR_JOB_RETENTION_DAYS",
            Some("-1".into()),
            "EQUITR_JOB_RETENTION_DAYS: `-1` is not a number of days",
        ),
        (
            "EQUITR_LEDGER_RETENTION_MONTHS",
            Some("a year".into()),
            "EQUITR_LEDGER_RETENTION_MONTHS: `a year` is not a number of months",
        ),
        (
            "EQUITR_PRUNE_INTERVAL_SECS",
            Some("1h".into()),
            "EQUITR_PRUNE_INTERVAL_SECS: `1h` is not a number of seconds",
        ),
    ];
    for (var, value, expected) in cases {
        let mut env = base.clone();
        env.retain(|(k, _)| k != var);
        if let Some(v) = value {
            env.push((var.to_string(), v));
        }
        let cfg = dir.path().join("config.yaml");
        std::fs::write(
            &cfg,
            "llm:\n  model: gpt-4o\n  models:\n    worker:\n      model: gpt-4o-mini\n",
        )
        .unwrap();
        env.push(("EQUITR_CONFIG".into(), cfg.display().to_string()));
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_equitr-coder"))
            .env_clear()
            .envs(env)
            .arg("serve")
            // A case that wrongly starts is killed when the timeout drops it.
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .unwrap_or_else(|_| panic!("{var}: serve started instead of stopping"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}: one line: {stderr}");
        assert!(lines[0].contains(expected), "{var}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_loses_nothing() {
    let Some(t) = World::default()
        .issue(1, "Question", "", "Codertocat")
        .serve_on(Backend::Postgres)
        .await
    else {
        return;
    };
    let (admin, db) = t.pg_database().unwrap();
    let admin = sqlx::PgPool::connect(admin).await.unwrap();
    assert_eq!(t.get("/readyz").await.0, 200);

    // The database goes away: no new connections, the service's own ones cut.
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let help = t.comment_delivery("Codertocat", 1, "/equitr help");
    let text = t.send(&help).await.status(503);
    assert_eq!(
        text, "database unavailable",
        "never a 2xx that drops the event"
    );
    let (status, why) = t.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(why.starts_with("database:"), "{why}");

    // It comes back: GitHub's redelivery of the same delivery is queued and answered once.
    sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut redelivered = None;
    // GitHub redelivers on request; here until the pool has reconnected (10 s at most).
    for _ in 0..50 {
        let r = t.send(&help).await;
        if r.status != 503 {
            redelivered = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    redelivered.expect("the redelivery is answered").accepted();
    assert_eq!(t.get("/readyz").await.0, 200);
    let answer = t.next_comment(1).await;
    assert!(answer.contains("/equitr implement"), "{answer}");
    assert!(t.llm.requests().is_empty());
    t.finish().await;
}

/// Many concurrent signed deliveries, a third of them repeated at once: the 2xx answers come
/// only after the commit (group commit), each delivery is recorded exactly once with exactly
/// one job, and every repeat is answered as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deliveries_with_duplicates_is_queued_exactly_once() {
    // No trigger label configured: each job looks at the label and does nothing.
    let t = World::default().serve().await;
    let tester = &t;
    const IDS: usize = 120;
    let labelled = t.label_delivery(1, "bug");
    let deliveries: Vec<_> = (0..IDS)
        .chain((0..IDS).step_by(3))
        .map(|n| {
            let mut d = labelled.clone();
            d.id = format!("burst-{n}");
            (n, d)
        })
        .collect();
    let answers = futures::future::join_all(
        deliveries
            .iter()
            .map(|(n, d)| async move { (*n, tester.send(d).await) }),
    )
    .await;
    let mut accepted = vec![0; IDS];
    for (n, r) in answers {
        match r.status {
            202 => accepted[n] += 1,
            200 => r.duplicate(),
            s => panic!("burst-{n}: {s} {}", r.text),
        }
    }
    assert!(accepted.iter().all(|&a| a == 1), "{accepted:?}");

    let pool = sqlx::SqlitePool::connect(t.db_url()).await.unwrap();
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE delivery_id LIKE 'burst-%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, IDS as i64);
    let per_delivery: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.delivery_id, count(j.id) FROM deliveries d LEFT JOIN jobs j \
         ON j.delivery_id = d.delivery_id WHERE d.delivery_id LIKE 'burst-%' \
         GROUP BY d.delivery_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_delivery.len(), IDS);
    for (id, jobs) in per_delivery {
        assert_eq!(jobs, 1, "{id}");
    }
    pool.close().await;
    // Every job runs and says nothing: `bug` is not this repository's trigger.
    t.settle().await;
    t.expect_no_comment(1).await;
    t.finish().await;
}

/// Issue 9, item 11: `serve` starts and takes deliveries while GitHub is out of reach.
/// `/readyz` says what is missing (and never calls an unreachable host a refusal of the
/// app's credentials); when GitHub answers, the queued job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_deliveries_while_github_is_unreachable_and_runs_them_when_it_answers() {
    // GitHub's address, with nothing listening on it yet.
    let port = dead_port();
    let api = format!("http://127.0.0.1:{port}");
    let t = World::default()
        .issue(1, "Question", "", "Codertocat")
        .worker([Reply::tool("finish", json!({"summary": "On line 1."}))])
        .env("GITHUB_API_URL", &api)
        .serve()
        .await;
    // Ready to take deliveries (a load balancer keeps sending them), and it says what is
    // missing.
    let (status, why) = t.get("/readyz").await;
    assert_eq!(status, 200);
    assert!(
        why.contains(&format!("github: could not reach GitHub at {api}")),
        "{why}"
    );
    let job = t
        .comment(1, "/equitr ask where is the heading?")
        .await
        .accepted();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.gh.comments(REPO, 1).len(),
        1,
        "only the question, no answer yet"
    );

    // GitHub comes back: a proxy on its address forwards to the fake.
    let upstream = t.gh.api_url().trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    assert_eq!(t.wait_job(job).await, Ended::Succeeded);
    insta::assert_snapshot!(t.next_comment(1).await, @"
    On line 1.

    <details><summary>Cost</summary>

    | role | model | calls | input | cached | output | USD |
    |---|---|--:|--:|--:|--:|--:|
    | worker | `gpt-4o-mini` | 1 | 100 | 0 | 20 | $0.0000 |
    | **total** | | 1 | 100 | 0 | 20 | **$0.0000** |

    same tokens on gpt-4o: $0.0005 — 16.7× saved  
    Escalation: routine — a read-only question  
    This month: $0.0000 (no repository cap)
    </details>

    <!-- equitr:job=[job-1] -->
    ");
    assert_eq!(t.get("/readyz").await, (200, "ready".to_string()));
    let log = t.log().join("\n");
    assert!(!log.contains("refused"), "{log}");
    t.finish().await;
}
