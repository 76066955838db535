//! `equitr-coder serve` keeping its jobs: through kill -9, SIGTERM, leases taken over, a
//! second process on the same PostgreSQL, a panic inside a job, and schedules missed while
//! it was down.

mod support;

use std::time::Duration;

use serde_json::json;
use support::harness::{on_both_stores, Backend, Ended, Tester, World, REPO, WORKER};
use support::llm_server::Reply;

fn write_the_fix() -> Reply {
    Reply::tool(
        "write_file",
        json!({"path": "README.md", "content": "# Hello World\n"}),
    )
}

fn finish(summary: &str) -> Reply {
    Reply::tool("finish", json!({ "summary": summary }))
}

/// The label's trigger on the default world.
fn labelled_world() -> World {
    World::default().repo_config("triggers: { label: bug }\n")
}

on_both_stores!(a_job_interrupted_by_kill_9_completes_after_a_restart_exactly_once);
async fn a_job_interrupted_by_kill_9_completes_after_a_restart_exactly_once(backend: Backend) {
    // The first attempt hangs at the model; the process is killed there.
    let Some(mut t) = labelled_world()
        .worker([Reply::hang(), write_the_fix(), finish("Fixed the heading.")])
        .env("EQUITR_JOB_LEASE_SECS", "2")
        .serve_on(backend)
        .await
    else {
        return;
    };
    let job = t.label(1, "bug").await.accepted();
    t.model_called(WORKER, 1).await;
    t.kill9().await;

    t.start().await;
    assert_eq!(t.wait_job(job).await, Ended::Succeeded);
    // Exactly one pull request and one summary comment (`finish` sees no second one).
    let pr = t.next_pr().await;
    assert_eq!(pr.head, "equitr/issue-1");
    let summary = t.next_comment(1).await;
    insta::allow_duplicates! {
        insta::assert_snapshot!(summary, @r#"
        🤖 Working on this issue.

        - [x] Read the issue and the repository configuration
        - [x] Clone the repository
        - [x] Work on the change
        - [x] Push the branch and open the pull request

        💰 Estimated cost: [estimate]

        ✅ Opened [github]/Codertocat/Hello-World/pull/2

        | role | model | calls | input | cached | output | USD |
        |---|---|--:|--:|--:|--:|--:|
        | worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |
        | **total** | | 2 | 200 | 0 | 40 | **$0.0001** |

        same tokens on gpt-4o: $0.0009 — 16.7× saved  
        Escalation: routine — routine change ("readme…"), no security or design signal  
        This month: $0.0027 (no repository cap)

        <!-- equitr:job=[job-1] -->
        "#);
    }
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_attempts_fails_with_a_comment_saying_so() {
    let mut t = labelled_world()
        .worker([Reply::hang()])
        .env("EQUITR_JOB_LEASE_SECS", "1")
        .serve()
        .await;
    let job = t.label(1, "bug").await.accepted();
    t.model_called(WORKER, 1).await;
    t.kill9().await;
    // This was the job's last allowed attempt.
    let db = sqlx::SqlitePool::connect(t.db_url()).await.unwrap();
    sqlx::query("UPDATE jobs SET max_attempts = attempts")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    // The store fails it at the next start, without running it.
    t.forget_job(job);

    t.start().await;
    let failure = t.next_comment_saying(1, "❌ This job failed").await;
    assert!(
        failure.contains(&format!("<!-- equitr:job={job} -->")),
        "{failure}"
    );
    // The hung call's reservation is counted in full: it may have been billed.
    assert!(!failure.contains("stopped: $0.0000."), "{failure}");
    // How many times the lease ran out depends on when the kill came.
    let failure = regex::Regex::new(r"lease expired \d+ times")
        .unwrap()
        .replace(&failure.to_string(), "lease expired [n] times")
        .into_owned();
    insta::assert_snapshot!(failure, @"
    ❌ This job failed: lease expired [n] times — the service was interrupted while running it each time, so it is not tried again

    Spent on models before it stopped: $0.0026. Nothing more will happen for this request; ask again to retry.

    <!-- equitr:job=[job-1] -->
    ");
    let state = t.store().await.job(job).await.unwrap().unwrap().state;
    assert_eq!(
        state,
        equitr_coder::store::JobState::Failed,
        "not run again"
    );
    assert_eq!(t.llm.requests_for(WORKER).len(), 1, "not run again");
    t.expect_no_pr().await;
    t.finish().await;
}

/// What another process's claim of the running job's expired lease looks like in the store:
/// a new owner, renewed far ahead.
async fn take_over_running_job(db: &str) {
    let db = sqlx::SqlitePool::connect(db).await.unwrap();
    let far = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let taken = sqlx::query(
        "UPDATE jobs SET lease_owner = 'another-process', lease_expires_at = $1 WHERE state = 'running'",
    )
    .bind(far)
    .execute(&db)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(taken, 1);
}

/// `serve` with `EQUITR_JOB_LEASE_SECS=lease` working on a labelled issue whose first model
/// answer (write the fix) takes `delay`; during that call another process takes the job over.
async fn taken_over_mid_call(lease: &str, delay: Duration) -> (Tester, i64) {
    let t = labelled_world()
        .worker([write_the_fix().after(delay), finish("Fixed the heading.")])
        .env("EQUITR_JOB_LEASE_SECS", lease)
        .serve()
        .await;
    let job = t.label(1, "bug").await.accepted();
    t.model_called(WORKER, 1).await;
    take_over_running_job(t.db_url()).await;
    (t, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_lease_is_taken_over_stops_without_pushing() {
    // A model that stalls well past the lease (long enough that a loaded machine's late
    // heartbeat still sees the take-over first): meanwhile another process takes the job over.
    let (t, job) = taken_over_mid_call("2", Duration::from_secs(6)).await;
    // The heartbeat notices; the job is the other process's now and prints no end line here.
    t.log_line("job's lease was lost; stopped it here").await;
    t.forget_job(job);
    t.wait_metric("equitr_jobs_finished_total{kind=\"implement\",state=\"lost\"} 1")
        .await;
    // Past the stalled answer: the stopped job never asks the model again nor pushes.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(t.llm.requests_for(WORKER).len(), 1);
    t.leaves_unused(WORKER, 1);
    assert!(
        t.gh.branch_sha(REPO, "equitr/issue-1").is_none(),
        "nothing pushed"
    );
    t.expect_no_pr().await;
    // What the thread was told before the take-over: work under way, nothing done.
    insta::assert_snapshot!(t.next_comment(1).await, @"
    🤖 Working on this issue.

    - [x] Read the issue and the repository configuration
    - [x] Clone the repository
    - [ ] Work on the change
    - [ ] Push the branch and open the pull request


    <!-- equitr:job=[job-1] -->
    ");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_checks_its_lease_before_it_pushes() {
    // A lease so long that no heartbeat comes during the test: only the check before the
    // push can notice that the job was taken over (as after a process froze past its lease).
    let (t, job) = taken_over_mid_call("600", Duration::from_secs(2)).await;
    // The job finishes its work, then stops at the push.
    assert_eq!(t.wait_job(job).await, Ended::Lost);
    assert_eq!(t.llm.requests_for(WORKER).len(), 2);
    assert!(
        t.gh.branch_sha(REPO, "equitr/issue-1").is_none(),
        "nothing pushed"
    );
    t.expect_no_pr().await;
    // The job is still the other process's: this one recorded nothing for it.
    let db = sqlx::SqlitePool::connect(t.db_url()).await.unwrap();
    let owner: String = sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(owner, "another-process");
    insta::assert_snapshot!(t.next_comment(1).await, @"
    🤖 Working on this issue.

    - [x] Read the issue and the repository configuration
    - [x] Clone the repository
    - [ ] Work on the change
    - [ ] Push the branch and open the pull request


    <!-- equitr:job=[job-1] -->
    ");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_a_running_job_after_the_grace_period() {
    // A lease far longer than the test: only a release can hand the job on this quickly.
    let mut t = labelled_world()
        .worker([Reply::hang(), write_the_fix(), finish("Fixed the heading.")])
        .env("EQUITR_JOB_LEASE_SECS", "600")
        .env("EQUITR_SHUTDOWN_GRACE_SECS", "1")
        .serve()
        .await;
    let job = t.label(1, "bug").await.accepted();
    t.model_called(WORKER, 1).await;
    let status = t.sigterm().await;
    assert!(status.success(), "{status:?}");
    // The job is back in the queue, its attempt given back.
    let row = t.store().await.job(job).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.attempts),
        (equitr_coder::store::JobState::Queued, 0),
        "{row:?}"
    );

    t.start().await;
    assert_eq!(t.wait_job(job).await, Ended::Succeeded);
    assert_eq!(t.next_pr().await.head, "equitr/issue-1");
    let summary = t.next_comment(1).await;
    assert!(summary.contains("✅ Opened"), "{summary}");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_postgres_never_run_a_job_twice() {
    const ISSUES: u64 = 4;
    let mut world = labelled_world();
    for n in 1..=ISSUES {
        world = world
            .issue(
                n,
                &format!("Spelling error {n} in the README file"),
                "It says Helo.",
                "Codertocat",
            )
            // One reply per job (write and finish at once): jobs run concurrently and share
            // the model's script.
            .worker([Reply::tools(vec![
                (
                    "write_file",
                    json!({"path": "README.md", "content": "# Hello World\n"}),
                ),
                ("finish", json!({"summary": "Fixed."})),
            ])]);
    }
    let Some(mut t) = world.serve_on(Backend::Postgres).await else {
        return;
    };
    let other = t.start_another().await;
    // Each process spaces its own writes to GitHub; two processes of one installation cannot
    // see each other's, so GitHub's "one mutation at a time" is broken between them.
    t.tolerate_violations("concurrent mutations for installation 1");
    for n in 1..=ISSUES {
        // Deliveries land on either process.
        t.via(if n % 2 == 0 { 0 } else { other });
        t.label(n, "bug").await.accepted();
    }
    let mut heads: Vec<String> = Vec::new();
    for _ in 1..=ISSUES {
        heads.push(t.next_pr().await.head.clone());
    }
    heads.sort();
    assert_eq!(
        heads,
        [
            "equitr/issue-1",
            "equitr/issue-2",
            "equitr/issue-3",
            "equitr/issue-4"
        ]
    );
    // Each job made exactly its one model call and wrote one summary: none ran twice.
    assert_eq!(t.llm.requests_for(WORKER).len() as u64, ISSUES);
    for n in 1..=ISSUES {
        let summary = t.next_comment(n).await;
        assert!(summary.contains("✅ Opened"), "#{n}: {summary}");
    }
    t.finish().await;
}

/// Issue 9, item 2: a panic inside a job (injected in a debug build while a model call's
/// reservation is outstanding) is caught at the job's edge: the job fails with a plain report
/// on its thread, the reservation is settled (charged: the call may have been billed), no
/// row stays `running`, and the same worker goes on to the next job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_job_fails_it_settles_its_reservations_and_the_worker_goes_on() {
    let t = World::default()
        .issue(1, "Question", "", "Codertocat")
        .issue(2, "Spend", "", "Codertocat")
        .service_config("server:\n  concurrency: 1\n")
        .env("EQUITR_INJECT_PANIC", "model-call")
        .serve()
        .await;
    let job = t
        .comment(1, "/equitr ask where is the heading?")
        .await
        .accepted();
    assert_eq!(t.wait_job(job).await, Ended::Failed);
    let report = t.next_comment(1).await;
    assert!(
        report.contains(&format!(
            "an internal error stopped job {job}; the operator's log has the details"
        )),
        "{report}"
    );
    insta::assert_snapshot!(report, @"
    ❌ This job failed: an internal error stopped job [job-1]; the operator's log has the details

    Spent on models before it stopped: $0.0025. Nothing more will happen for this request; ask again to retry.

    <!-- equitr:job=[job-1] -->
    ");
    let spent = t.store().await.job_spend(job).await.unwrap().spent;
    assert!(
        spent > equitr_coder::llm::pricing::Usd::ZERO,
        "the outstanding reservation is charged"
    );
    let db = sqlx::SqlitePool::connect(t.db_url()).await.unwrap();
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE state = 'reserved'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(open, 0, "no reservation left outstanding");
    t.log_line("the job panicked").await;
    // The one worker is still there: the next job (no model call) runs.
    let next = t.comment(2, "/equitr cost").await.accepted();
    assert_eq!(t.wait_job(next).await, Ended::Succeeded);
    let cost = t.next_comment(2).await;
    assert!(cost.contains("has spent"), "{cost}");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_missed_while_down_fires_once_at_start_up_and_opens_a_pr() {
    use equitr_coder::store::{Fired, ManualClock, NewJob, ScheduleSlot, Store, StoreOptions};
    use std::sync::Arc;

    let cron = "0 3 * * 1";
    let mut t = World::default()
        .repo(&[("README.md", "# Hello\n"), ("src/old.rs", "// unused\n")])
        .repo_config(&format!(
            "schedules:\n  - {{ name: Weekly cleanup, cron: \"{cron}\", task: \"Empty src/old.rs\", budget_usd: 0.5 }}\n"
        ))
        .issue(1, "Costs?", "", "Codertocat")
        .worker([
            Reply::tool(
                "write_file",
                json!({"path": "src/old.rs", "content": "// nothing left here\n"}),
            ),
            finish("Removed src/old.rs, which nothing used."),
        ])
        // A tick every second: the missed slots have every chance to fire more than once.
        .env("EQUITR_SCHEDULER_TICK_SECS", "1")
        .build()
        .await;
    // The service last ran weeks ago: it armed the schedule for a Monday long past.
    {
        let weeks_ago = Arc::new(ManualClock::new(1_767_225_600_000)); // 2026-01-01
        let store = Store::connect_with(
            t.db_url(),
            StoreOptions {
                clock: weeks_ago,
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        let slot = ScheduleSlot {
            repo: REPO,
            name: "Weekly cleanup",
            cron,
            installation_id: 1,
        };
        let never = NewJob {
            kind: "schedule".into(),
            repo: REPO.into(),
            installation_id: 1,
            payload: json!({}),
            dedupe_key: None,
            thread: None,
        };
        let armed = store
            .fire_schedule(&slot, |now| Some(now + 86_400_000), never)
            .await
            .unwrap();
        assert!(matches!(armed, Fired::Armed { .. }), "{armed:?}");
    }
    t.start().await;
    let (_, ended) = t.job_finished().await;
    assert_eq!(ended, Ended::Succeeded);
    let pr = t.next_pr().await;
    insta::assert_snapshot!(pr, @r#"
    # Weekly cleanup: Removed src/old.rs, which nothing used.
    equitr/refactor-weekly-cleanup → main

    Scheduled task `Weekly cleanup`:

    > Empty src/old.rs

    Removed src/old.rs, which nothing used.

    <details><summary>Cost of the latest run</summary>

    | role | model | calls | input | cached | output | USD |
    |---|---|--:|--:|--:|--:|--:|
    | worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |
    | **total** | | 2 | 200 | 0 | 40 | **$0.0001** |

    same tokens on gpt-4o: $0.0009 — 16.7× saved  
    Escalation: routine — routine change ("hello…"), no security or design signal  
    This month: $0.0001 (no repository cap)
    </details>
    "#);
    let files = t.gh.branch_files(REPO, "equitr/refactor-weekly-cleanup");
    assert_eq!(files["src/old.rs"], "// nothing left here\n");
    // Fired once, not once per missed Monday, over several more ticks.
    tokio::time::sleep(Duration::from_secs(4)).await;
    t.expect_no_pr().await;
    assert_eq!(t.llm.requests_for(WORKER).len(), 2);

    // `/equitr cost` names the schedule's spend.
    let cost = t.comment(1, "/equitr cost").await.accepted();
    insta::assert_snapshot!(t.next_comment(1).await, @"
    This month ([month]) Codertocat/Hello-World has spent $0.0001; it has no monthly cap.

    Of which scheduled tasks:
    - `Weekly cleanup`: $0.0001


    <!-- equitr:bot -->
    ");
    assert_eq!(t.job_finished().await, (cost, Ended::Succeeded));

    // A week later the next run fails (GitHub refuses to update the PR): there is no issue
    // thread, so the failure is told on the schedule's open PR, with what it cost.
    t.llm.push(
        WORKER,
        Reply::tool(
            "write_file",
            json!({"path": "src/old.rs", "content": "// still nothing here\n"}),
        ),
    );
    t.llm.push(WORKER, finish("Tidied src/old.rs."));
    t.gh.fail_next(
        "PATCH",
        &format!("/repos/{REPO}/pulls/{}", pr.number),
        422,
        vec![],
    );
    let db = sqlx::SqlitePool::connect(t.db_url()).await.unwrap();
    sqlx::query("UPDATE schedules SET next_slot = 0")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (_, ended) = t.job_finished().await;
    assert_eq!(ended, Ended::Failed);
    // Issue 9, item 12: the thread gets one plain sentence; the details (the status, the
    // request) are the operator's, in the log.
    let failure = t.next_comment(pr.number).await;
    assert!(!failure.contains("GitHub answered 422"), "{failure}");
    insta::assert_snapshot!(failure, @"
    ❌ This job failed: an internal error stopped job [job]; the operator's log has the details

    Spent on models before it stopped: $0.0001. The schedule runs again at its next slot.

    <!-- equitr:job=[job] -->
    ");
    t.log_line("GitHub answered 422 to PATCH").await;
    t.expect_no_pr().await;
    t.finish().await;
}
