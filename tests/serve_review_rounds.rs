//! `equitr-coder serve` reviewing a pull request more than once: a push after a review is
//! reviewed from the last reviewed head, no finding is raised twice, a fixed finding's
//! thread is resolved, every finding lands somewhere, the quiet settings hold, and a review
//! whose estimate cannot fit declines before any model call.

mod support;

use serde_json::{json, Value};
use support::harness::{Tester, World, REPO, WORKER};
use support::llm_server::Reply;

const DB: &str = "pub fn find(db: &Db, id: &str) -> Row {\n    db.get(id)\n}\n";
const INJECTED: &str =
    "pub fn find(db: &Db, id: &str) -> Row {\n    let q = format!(\"SELECT * FROM t WHERE id = '{id}'\");\n    db.query(&q)\n}\n";
const SAFE: &str =
    "pub fn find(db: &Db, id: &str) -> Row {\n    db.query_with(\"SELECT * FROM t WHERE id = ?\", &[id])\n}\n";

fn finding(
    path: &str,
    line: u64,
    severity: &str,
    kind: &str,
    title: &str,
) -> (&'static str, Value) {
    (
        "report_finding",
        json!({"path": path, "line": line, "severity": severity, "kind": kind, "title": title, "body": format!("{title}.")}),
    )
}

fn finish(summary: &str) -> Reply {
    Reply::tool("finish", json!({ "summary": summary }))
}

/// The supervisor's look at `n` rounds whose added code is security-relevant (a query built
/// from a string, here).
fn supervisor_rounds(n: usize) -> Vec<Reply> {
    (0..n).map(|_| finish("Seen.")).collect()
}

/// octocat's PR #2 from `feature` brings an SQL injection into `src/db.rs` (line 2); pull
/// requests are reviewed automatically.
fn an_injection() -> World {
    World::default()
        .repo(&[("src/db.rs", DB)])
        .repo_config("triggers: { auto_review: true }\n")
        .pr(2, "feature", &[("src/db.rs", Some(INJECTED))], "octocat")
}

/// The first round: the worker reports the injection on line 2.
fn first_round() -> [Reply; 2] {
    [
        Reply::tools(vec![finding(
            "src/db.rs",
            2,
            "high",
            "sql-injection",
            "SQL injection",
        )]),
        finish("An injection."),
    ]
}

/// The text of every worker request after the first `n`.
fn worker_prompts_after(t: &Tester, n: usize) -> String {
    t.llm.requests_for(WORKER)[n..]
        .iter()
        .map(|r| r.body["messages"].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_after_a_review_is_reviewed_from_the_last_head_and_no_finding_repeats() {
    let lines_above = format!("// Rows by id.\n// (kept small)\n{INJECTED}");
    let t = an_injection()
        .supervisor(supervisor_rounds(1))
        .worker(first_round())
        .worker([
            // Round two: the same finding, two lines further down, and a new one.
            Reply::tools(vec![
                finding("src/db.rs", 4, "high", "sql-injection", "SQL injection"),
                finding(
                    "src/util.rs",
                    1,
                    "medium",
                    "unchecked-error",
                    "Unchecked error",
                ),
            ]),
            finish("Still the injection; and an unchecked error."),
        ])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    assert_eq!(first.comments.len(), 1, "{first}");
    assert_eq!(first.comments[0].line, Some(2));
    assert!(
        first.body.contains("Range: the whole pull request"),
        "{first}"
    );
    let old_head = first.commit_id.clone();

    let new_head = t
        .push_to_pr(
            2,
            &[
                ("src/db.rs", Some(&lines_above)),
                (
                    "src/util.rs",
                    Some("pub fn parse(s: &str) -> u32 { s.parse().unwrap_or(0) }\n"),
                ),
            ],
            "Add util",
        )
        .await;
    let second = t.next_review(2).await;
    assert_eq!(second.commit_id, new_head);
    insta::assert_snapshot!(second, @"
    COMMENT

    ## equitr review

    Still the injection; and an unchecked error.

    ---
    Range: `[sha]..[sha]`, the commits since the last review  
    Reviewed (2): src/db.rs, src/util.rs  
    Not repeated: 1 finding(s) raised before  

    | role | model | calls | input | cached | output | USD |
    |---|---|--:|--:|--:|--:|--:|
    | worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |
    | **total** | | 2 | 200 | 0 | 40 | **$0.0001** |

    same tokens on gpt-4o: $0.0009 — 16.7× saved  
    Escalation: routine — no sensitive path in the diff  
    This month: $0.0006 (no repository cap)

    <!-- equitr:job=[job-2] -->


    --- src/util.rs:1 (RIGHT) ---
    **Medium: Unchecked error**

    Unchecked error.

    <!-- equitr:finding=5b0775fcf5a24ddf lines=1 code=775defc0c31b5686 sev=medium at=7372632f7574696c2e7273 -->
    ");
    // Only the new finding is posted; the injection is not raised again.
    let posted: Vec<(&str, Option<u64>)> = second
        .comments
        .iter()
        .map(|c| (c.path.as_str(), c.line))
        .collect();
    assert_eq!(posted, vec![("src/util.rs", Some(1))], "{second}");
    assert!(
        second.body.contains(&format!(
            "Range: `{}..{}`, the commits since the last review",
            &old_head[..7],
            &new_head[..7]
        )),
        "{second}"
    );
    assert!(
        second
            .body
            .contains("Not repeated: 1 finding(s) raised before"),
        "{second}"
    );
    // The second round read the new commits only: the injection came as context, not as
    // an added line.
    let prompt = worker_prompts_after(&t, 2);
    assert!(prompt.contains("+// Rows by id."), "{prompt}");
    assert!(!prompt.contains("+    let q = format!"), "{prompt}");
    // The first inline comment is still the only one on the injection.
    let on_db =
        t.gh.review_comments(REPO, 2)
            .into_iter()
            .filter(|c| c.path == "src/db.rs")
            .count();
    assert_eq!(on_db, 1);
    t.check_runs(&old_head).await;
    let run = t.check_run(&new_head).await;
    // The injection is still open: the check keeps failing.
    assert_eq!(run.conclusion.as_deref(), Some("failure"), "{run}");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_whose_code_was_fixed_has_its_thread_resolved() {
    let t = an_injection()
        .supervisor(supervisor_rounds(2))
        .worker(first_round())
        .worker([finish("Looks fixed.")])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    let head = t
        .push_to_pr(2, &[("src/db.rs", Some(SAFE))], "Use a bound parameter")
        .await;
    let second = t.next_review(2).await;
    assert!(second.comments.is_empty(), "{second}");
    assert!(
        second.body.contains("Fixed: `src/db.rs` (thread resolved)"),
        "{second}"
    );
    let threads = t.gh.threads(REPO, 2);
    assert_eq!(threads.len(), 1);
    assert!(threads[0].resolved);
    assert_eq!(
        threads[0].resolved_by.as_deref(),
        Some(t.gh.bot_login().as_str())
    );
    assert!(
        t.bot_replies(2).await.is_empty(),
        "resolved, not replied to"
    );
    t.check_runs(&first.commit_id).await;
    assert_eq!(
        t.check_run(&head).await.conclusion.as_deref(),
        Some("success")
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_the_token_cannot_resolve_a_thread_the_bot_replies_fixed_once() {
    let t = an_injection()
        .supervisor(supervisor_rounds(2))
        .worker(first_round())
        .worker([finish("Looks fixed.")])
        .worker([finish("Nothing new.")])
        .serve()
        .await;
    t.gh.refuse_thread_resolution();
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    let fixed = t
        .push_to_pr(2, &[("src/db.rs", Some(SAFE))], "Use a bound parameter")
        .await;
    let second = t.next_review(2).await;
    assert!(
        second
            .body
            .contains("Fixed: `src/db.rs` (replied on its thread)"),
        "{second}"
    );
    let replies = t.bot_replies(2).await;
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0]
            .body
            .starts_with(&format!("Fixed in {}.", &fixed[..7])),
        "{}",
        replies[0].body
    );
    assert!(!t.gh.threads(REPO, 2)[0].resolved);
    t.log_line("could not resolve the review thread").await;
    // A third round says nothing more about it.
    let third_head = t
        .push_to_pr(2, &[("README.md", Some("# db\n"))], "Docs")
        .await;
    let third = t.next_review(2).await;
    assert!(!third.body.contains("Fixed:"), "{third}");
    assert!(t.bot_replies(2).await.is_empty());
    for sha in [&first.commit_id, &fixed, &third_head] {
        t.check_runs(sha).await;
    }
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_that_drops_the_reviewed_head_gets_a_full_review_that_says_so() {
    let t = an_injection()
        .supervisor(supervisor_rounds(2))
        .worker(first_round())
        .worker([finish("Rewritten.")])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    let head = t
        .force_push_pr(2, &[("src/db.rs", Some(SAFE))], "Rewrite")
        .await;
    let second = t.next_review(2).await;
    assert!(
        second.body.contains(&format!(
            "the last reviewed head {} is no longer in this branch, so this is a full review",
            &first.commit_id[..7]
        )),
        "{second}"
    );
    t.check_runs(&first.commit_id).await;
    t.check_runs(&head).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_off_the_diff_land_as_file_comments_or_in_the_body_and_a_refusal_is_folded() {
    let long: String = (1..=30).map(|i| format!("// line {i}\n")).collect();
    let changed = long.replace("// line 20\n", "// line twenty\n");
    let t = World::default()
        .repo(&[("src/a.rs", &long), ("src/b.rs", "pub fn b() {}\n")])
        .pr(2, "feature", &[("src/a.rs", Some(&changed))], "octocat")
        .worker([
            Reply::tools(vec![
                // On the diff, over three lines.
                ("report_finding", json!({"path": "src/a.rs", "start_line": 19, "line": 21, "severity": "medium", "kind": "naming", "title": "Spelled-out number", "body": "Use digits."})),
                // In the changed file, far from the hunk.
                finding("src/a.rs", 2, "low", "stale-comment", "Stale comment"),
                // In a file the pull request does not change.
                finding("src/b.rs", 1, "low", "dead-code", "Dead code"),
            ]),
            finish("Three notes."),
        ])
        .serve()
        .await;
    t.comment(2, "/equitr review").await.accepted();
    let review = t.next_review(2).await;
    let placed: Vec<(&str, Option<u64>, Option<u64>, &str)> = review
        .comments
        .iter()
        .map(|c| {
            (
                c.path.as_str(),
                c.start_line,
                c.line,
                c.subject_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        vec![
            ("src/a.rs", Some(19), Some(21), "line"),
            ("src/a.rs", None, None, "file"),
        ],
        "{review}"
    );
    assert!(review.comments[1]
        .body
        .starts_with("**Line 2** (not in the diff)"));
    assert!(
        review.body.contains(
            "**On files this pull request does not change:**\n\n- `src/b.rs:1` **Low: Dead code**"
        ),
        "{review}"
    );
    t.next_comment(2).await;
    t.check_runs(&review.commit_id).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_github_refuses_are_folded_into_the_review_never_dropped() {
    let t = World::default()
        .repo(&[("src/a.rs", "pub fn a() {}\n")])
        .pr(
            2,
            "feature",
            &[("src/a.rs", Some("pub fn a() { todo!() }\n"))],
            "octocat",
        )
        .worker([
            Reply::tools(vec![finding("src/a.rs", 1, "high", "panic", "Panics")]),
            finish("A panic."),
        ])
        .serve()
        .await;
    // GitHub refuses the first two attempts (line comments, then file comments).
    for _ in 0..2 {
        t.gh.fail_next(
            "POST",
            &format!("/repos/{REPO}/pulls/2/reviews"),
            422,
            vec![],
        );
    }
    t.comment(2, "/equitr review").await.accepted();
    let review = t.next_review(2).await;
    assert!(review.comments.is_empty(), "{review}");
    assert!(
        review
            .body
            .contains("**GitHub would not place these findings on the diff**"),
        "{review}"
    );
    assert!(
        review.body.contains("- `src/a.rs:1` **High: Panics**"),
        "{review}"
    );
    assert!(t.next_comment(2).await.contains("✅ Reviewed"));
    t.check_runs(&review.commit_id).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quiet_settings_hold_and_the_check_run_annotates_every_finding() {
    let mut tools = Vec::new();
    for line in 1..=60u64 {
        tools.push(finding(
            "src/a.rs",
            line,
            "low",
            &format!("rule-{line}"),
            &format!("Note {line}"),
        ));
    }
    tools.push(finding(
        "src/a.rs",
        61,
        "critical",
        "auth-bypass",
        "Auth bypass",
    ));
    tools.push(finding(
        "src/a.rs",
        62,
        "medium",
        "unchecked-error",
        "Unchecked",
    ));
    let file: String = (1..=70).map(|i| format!("let x{i} = {i};\n")).collect();
    let t = World::default()
        .repo(&[("src/a.rs", "\n")])
        .repo_config(
            "review: { inline_min_severity: medium, max_inline_comments: 1, exclude: [\"**/*.lock\"] }\n",
        )
        .pr(
            2,
            "feature",
            &[("src/a.rs", Some(&file)), ("Cargo.lock", Some("# lock\n"))],
            "octocat",
        )
        .worker([Reply::tools(tools), finish("Many notes.")])
        .serve()
        .await;
    let job = t.comment(2, "/equitr review").await.accepted();
    let review = t.next_review(2).await;
    // One inline comment, the most severe; the rest collapsed, none lost.
    assert_eq!(review.comments.len(), 1, "{review}");
    assert!(review.comments[0]
        .body
        .starts_with("**Critical: Auth bypass**"));
    assert!(
        review
            .body
            .contains("<details>\n<summary>61 more finding(s), not posted inline</summary>"),
        "{review}"
    );
    assert!(review
        .body
        .contains("(over review.max_inline_comments (1))"));
    assert!(review
        .body
        .contains("(below review.inline_min_severity (medium))"));
    assert!(
        review
            .body
            .contains("Skipped (1): Cargo.lock (filtered by review.exclude / review.include)"),
        "{review}"
    );
    t.next_comment(2).await;
    let run = t.check_run(&review.commit_id).await;
    assert_eq!(run.annotations.len(), 62, "every finding, in batches of 50");
    assert_eq!(run.external_id.as_deref(), Some(job.to_string().as_str()));
    assert_eq!(run.annotations[0].annotation_level, "failure");
    assert!(run.output["summary"]
        .as_str()
        .unwrap_or_default()
        .starts_with("62 new finding(s) (1 critical, 1 medium, 60 low), 1 blocking"));
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_whose_estimate_cannot_fit_declines_before_any_model_call() {
    let t = World::default()
        .repo(&[("src/a.rs", "pub fn a() {}\n")])
        .repo_config("budget: { monthly_usd: 0.00001 }\n")
        .pr(
            2,
            "feature",
            &[("src/a.rs", Some("pub fn a() { b() }\n"))],
            "octocat",
        )
        .serve()
        .await;
    t.comment(2, "/equitr review").await.accepted();
    let said = t.next_comment(2).await;
    insta::assert_snapshot!(said, @"
    🤖 Reviewing this pull request.

    - [x] Read the pull request
    - [ ] Review the diff
    - [ ] Post the review

    🛑 Not started: this review would cost at least [low] (estimate [estimate]), more than the $0.00001 left under `budget.monthly_usd` (a cap of $0.00001). Nothing was spent and no model was called. To run it, raise `budget.monthly_usd` or narrow the review with `review.exclude` / `review.include`.

    <!-- equitr:job=[job-1] -->
    ");
    assert!(
        said.contains("🛑 Not started: this review would cost at least $"),
        "{said}"
    );
    assert!(said.contains("left under `budget.monthly_usd`"), "{said}");
    assert!(
        said.contains("Nothing was spent and no model was called."),
        "{said}"
    );
    assert!(t.llm.requests_for(WORKER).is_empty());
    let head = t.gh.branch_sha(REPO, "feature").unwrap();
    let run = t.check_run(&head).await;
    assert_eq!(run.conclusion.as_deref(), Some("neutral"), "{run}");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_a_person_answered_is_not_raised_again_on_a_second_full_review() {
    let t = an_injection()
        .supervisor(supervisor_rounds(2))
        .worker(first_round())
        // `/equitr review` again on the same head: the model reports the injection again,
        // and a new one.
        .worker([
            Reply::tools(vec![
                finding("src/db.rs", 2, "high", "sql-injection", "SQL injection"),
                finding(
                    "src/db.rs",
                    3,
                    "medium",
                    "unchecked-error",
                    "Unchecked error",
                ),
            ]),
            finish("Again."),
        ])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    let comment = first.comments[0].id;
    // octocat disagrees: a 👎 and a reply.
    t.gh.react_to_review_comment(REPO, comment, "octocat", "-1");
    t.gh.reply_to_review_comment(
        REPO,
        2,
        comment,
        "octocat",
        "Not reachable from user input.",
    );
    t.comment(2, "/equitr review").await.accepted();
    let second = t.next_review(2).await;
    let posted: Vec<(&str, Option<u64>)> = second
        .comments
        .iter()
        .map(|c| (c.path.as_str(), c.line))
        .collect();
    assert_eq!(posted, vec![("src/db.rs", Some(3))], "{second}");
    assert!(
        second
            .body
            .contains("Not repeated: 1 finding(s) raised before, 1 of them answered by a person"),
        "{second}"
    );
    assert!(
        second
            .body
            .contains("no new commits since the last review at"),
        "{second}"
    );
    t.next_comment(2).await;
    t.check_runs(&first.commit_id).await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_review_of_a_head_that_moved_on_is_not_posted() {
    let t = an_injection()
        .supervisor(supervisor_rounds(2))
        .worker([
            // The first review is slow: a push lands while it runs.
            Reply::tools(vec![finding(
                "src/db.rs",
                2,
                "high",
                "sql-injection",
                "SQL injection",
            )])
            .after(std::time::Duration::from_millis(1500)),
            finish("An injection."),
        ])
        .worker(first_round())
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first_head = t.gh.branch_sha(REPO, "feature").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let new_head = t
        .push_to_pr(2, &[("README.md", Some("# db\n"))], "Docs")
        .await;
    // One review, of the new head; the stale one said so in its check run only.
    let review = t.next_review(2).await;
    assert_eq!(review.commit_id, new_head);
    assert_eq!(t.gh.reviews(REPO, 2).len(), 1);
    let stale = t.check_run(&first_head).await;
    assert_eq!(stale.conclusion.as_deref(), Some("neutral"), "{stale}");
    assert!(
        stale.output["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Not posted: the pull request moved on to"),
        "{stale}"
    );
    t.check_run(&new_head).await;
    t.finish().await;
}

support::harness::on_both_stores!(cost_shows_how_good_the_estimates_have_been);
async fn cost_shows_how_good_the_estimates_have_been(backend: support::harness::Backend) {
    let Some(t) = an_injection()
        .worker(first_round())
        .supervisor(supervisor_rounds(1))
        .serve_on(backend)
        .await
    else {
        return;
    };
    t.comment(2, "/equitr review").await.accepted();
    let review = t.next_review(2).await;
    t.next_comment(2).await;
    t.check_runs(&review.commit_id).await;
    t.comment(2, "/equitr cost").await.accepted();
    let cost = t.next_comment(2).await;
    assert!(
        cost.contains("Estimates before each job, against what it cost:\n- review: 1 job(s), actual ÷ estimate "),
        "{cost}"
    );
    assert!(
        cost.contains("× (median), 0 within the estimated range"),
        "{cost}"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_listed_in_the_body_keeps_the_check_failing_until_its_code_is_gone() {
    // Below `inline_min_severity`, the injection is listed in the review's body, not inline.
    let t = World::default()
        .repo(&[("src/db.rs", DB)])
        .repo_config("triggers: { auto_review: true }\nreview: { inline_min_severity: critical }\n")
        .pr(2, "feature", &[("src/db.rs", Some(INJECTED))], "octocat")
        .supervisor(supervisor_rounds(2))
        .worker(first_round())
        .worker([finish("Docs only.")])
        .worker([finish("Looks fixed.")])
        .worker([finish("Nothing new.")])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    assert!(first.comments.is_empty(), "{first}");
    assert!(
        first.body.contains("`src/db.rs:2` **High: SQL injection**"),
        "{first}"
    );
    assert_eq!(
        t.check_run(&first.commit_id).await.conclusion.as_deref(),
        Some("failure")
    );

    // A push that leaves the injection where it was: the check still fails, for it.
    let docs = t
        .push_to_pr(2, &[("README.md", Some("# db\n"))], "Docs")
        .await;
    let second = t.next_review(2).await;
    assert!(
        !second.body.contains("SQL injection"),
        "not raised again: {second}"
    );
    let run = t.check_run(&docs).await;
    assert_eq!(run.conclusion.as_deref(), Some("failure"), "{run}");
    assert!(
        run.output["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("1 blocking finding(s) from earlier reviews still open"),
        "{run}"
    );

    // The fix: the review says so, once, and the check passes.
    let fixed = t
        .push_to_pr(2, &[("src/db.rs", Some(SAFE))], "Use a bound parameter")
        .await;
    let third = t.next_review(2).await;
    assert!(
        third
            .body
            .contains("Fixed: `src/db.rs` (listed in an earlier review)"),
        "{third}"
    );
    assert_eq!(
        t.check_run(&fixed).await.conclusion.as_deref(),
        Some("success")
    );
    let later = t
        .push_to_pr(2, &[("README.md", Some("# db\n\nMore.\n"))], "More docs")
        .await;
    let fourth = t.next_review(2).await;
    assert!(!fourth.body.contains("Fixed:"), "said once: {fourth}");
    assert_eq!(
        t.check_run(&later).await.conclusion.as_deref(),
        Some("success")
    );
    assert!(t.bot_replies(2).await.is_empty(), "no thread to reply on");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_cut_short_does_not_move_the_next_reviews_range_on() {
    // The model refuses the first review's only request: the review posts, cut short.
    let t = an_injection()
        .supervisor(supervisor_rounds(1))
        .worker([Reply::status(
            400,
            json!({"error": {"message": "Invalid request.", "type": "invalid_request_error"}}),
        )])
        .worker([
            Reply::tools(vec![finding(
                "src/db.rs",
                2,
                "high",
                "sql-injection",
                "SQL injection",
            )]),
            Reply::tool("finish", json!({"summary": "The injection."})),
        ])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    assert!(first.body.contains("src/db.rs (not reached"), "{first}");
    let head = t
        .push_to_pr(2, &[("README.md", Some("# db\n"))], "Docs")
        .await;
    let second = t.next_review(2).await;
    assert!(
        second.body.contains(&format!(
            "the last review, at {}, did not cover all of its range, so this is a full review",
            &first.commit_id[..7]
        )),
        "{second}"
    );
    assert!(
        worker_prompts_after(&t, 1).contains("let q = format!"),
        "the second review read the code the first did not reach"
    );
    assert_eq!(second.comments.len(), 1, "{second}");
    t.check_runs(&first.commit_id).await;
    t.check_runs(&head).await;
    t.finish().await;
}

fn as_refs(c: &[(String, String)]) -> Vec<(&str, Option<&str>)> {
    c.iter()
        .map(|(p, t)| (p.as_str(), Some(t.as_str())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_past_githubs_diff_limits_is_reviewed_whole_both_times() {
    // 301 files: GitHub renders no diff of it (406) and its compare lists 300 files.
    let names: Vec<String> = (0..301).map(|i| format!("src/m{i:03}.rs")).collect();
    let v1: Vec<String> = (0..301)
        .map(|i| format!("pub const N: u32 = {i};\n"))
        .collect();
    let v2: Vec<String> = (0..301)
        .map(|i| format!("pub const N: u32 = {};\n", i + 1))
        .collect();
    let changes = |v: &[String]| -> Vec<(String, String)> {
        names.iter().cloned().zip(v.iter().cloned()).collect()
    };
    let (first_change, second_change) = (changes(&v1), changes(&v2));
    let t = World::default()
        .repo_config("triggers: { auto_review: true }\n")
        .pr(2, "feature", &as_refs(&first_change), "octocat")
        .worker([finish("Constants.")])
        .worker([finish("Constants, bumped.")])
        .serve()
        .await;
    t.open_pr(2).await.accepted();
    let first = t.next_review(2).await;
    assert!(first.body.contains("Reviewed (301):"), "{first}");
    assert!(
        t.llm.requests_for(WORKER)[0].body["messages"]
            .to_string()
            .contains("src/m300.rs"),
        "the 301st file reached the model"
    );
    let head = t.push_to_pr(2, &as_refs(&second_change), "Bump").await;
    let second = t.next_review(2).await;
    assert!(second.body.contains("Reviewed (301):"), "{second}");
    assert!(
        second.body.contains("the commits since the last review"),
        "{second}"
    );
    let prompt = worker_prompts_after(&t, 1);
    assert!(
        prompt.contains("src/m300.rs") && prompt.contains("N: u32 = 301"),
        "the compare's 301st file was diffed from the checkout"
    );
    t.log_line("GitHub will not render this diff").await;
    t.check_runs(&first.commit_id).await;
    t.check_runs(&head).await;
    t.finish().await;
}
