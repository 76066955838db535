//! `equitr-coder serve` reviewing pull requests: `/equitr review` on a PR becomes a review
//! with line comments, a check run and a progress comment that ends pointing at the review.

mod support;

use serde_json::json;
use support::harness::{on_both_stores, Backend, Ended, World, REPO};
use support::llm_server::Reply;

const CHECK: &str = "pub fn check(p: &str) -> bool {\n    verify(p)\n}\n";
const BYPASS: &str = "pub fn check(p: &str) -> bool {\n    p == \"admin\"\n}\n";

/// `src/auth.rs` on `main`; octocat's PR #2 from `tidy` replaces the check with a hard-coded
/// password. The worker reads the file and reports it; src/auth.rs is sensitive, so the
/// supervisor looks too.
fn a_pr_with_an_auth_bypass() -> World {
    World::default()
        .repo(&[("src/auth.rs", CHECK)])
        .pr(2, "tidy", &[("src/auth.rs", Some(BYPASS))], "octocat")
        .worker([
            Reply::tools(vec![
                ("read_file", json!({"path": "src/auth.rs"})),
                ("report_finding", json!({"path": "src/auth.rs", "line": 2, "severity": "high", "title": "Hard-coded password", "body": "Anyone can log in with `admin`.", "suggestion": "    verify(p)"})),
            ]),
            Reply::tool("finish", json!({"summary": "Auth bypass."})),
        ])
        .supervisor([Reply::tool("finish", json!({"summary": "Agree: reject."}))])
}

on_both_stores!(review_posts_line_comments_a_check_run_and_a_comment_pointing_at_the_review);
async fn review_posts_line_comments_a_check_run_and_a_comment_pointing_at_the_review(
    backend: Backend,
) {
    let Some(t) = a_pr_with_an_auth_bypass().serve_on(backend).await else {
        return;
    };
    let head = t.gh.branch_sha(REPO, "tidy").unwrap();
    let job = t.comment(2, "/equitr review").await.accepted();
    assert_eq!(t.wait_job(job).await, Ended::Succeeded);

    let review = t.next_review(2).await;
    assert_eq!(review.commit_id, head);
    insta::allow_duplicates! {
        insta::assert_snapshot!(review, @"
        REQUEST_CHANGES

        ## equitr review

        Auth bypass.

        Supervisor: Agree: reject.

        ---
        Range: the whole pull request, `[sha]..[sha]`  
        Reviewed (1): src/auth.rs  

        | role | model | calls | input | cached | output | USD |
        |---|---|--:|--:|--:|--:|--:|
        | supervisor | `gpt-4o` | 1 | 100 | 0 | 20 | $0.0005 |
        | worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |
        | **total** | | 3 | 300 | 0 | 60 | **$0.0005** |

        same tokens on gpt-4o: $0.0014 — 2.7× saved  
        Escalation: security — the diff touches sensitive paths: src/auth.rs  
        This month: $0.0005 (no repository cap)

        <!-- equitr:job=[job-1] -->


        --- src/auth.rs:2 (RIGHT) ---
        **High: Hard-coded password**

        Anyone can log in with `admin`.

        ```suggestion
            verify(p)
        ```

        <!-- equitr:finding=b73b1a649e394b7d lines=1 code=a23d82a2bb31a9cb sev=high at=7372632f617574682e7273 -->
        ");
    }
    let run = t.check_run(&head).await;
    insta::allow_duplicates! {
        insta::assert_snapshot!(run, @"
        equitr / review: failure (completed)

        ## equitr / review

        1 new finding(s) (1 high), 1 blocking; done
        ");
    }
    // The one progress comment on the thread, updated in place, ends pointing at the review,
    // with its cost.
    let progress = t.next_comment(2).await;
    assert!(progress.edits >= 2, "updated in place: {progress:?}");
    assert!(
        progress.contains(&format!("#pullrequestreview-{}", review.id)),
        "{progress}"
    );
    insta::allow_duplicates! {
        insta::assert_snapshot!(progress, @"
        🤖 Reviewing this pull request.

        - [x] Read the pull request
        - [x] Review the diff
        - [x] Post the review

        💰 Estimated cost: [estimate]

        ✅ Reviewed: [github]/Codertocat/Hello-World/pull/2#pullrequestreview-[id]

        1 new finding(s) (1 high), 1 blocking; done

        | role | model | calls | input | cached | output | USD |
        |---|---|--:|--:|--:|--:|--:|
        | supervisor | `gpt-4o` | 1 | 100 | 0 | 20 | $0.0005 |
        | worker | `gpt-4o-mini` | 2 | 200 | 0 | 40 | $0.0001 |
        | **total** | | 3 | 300 | 0 | 60 | **$0.0005** |

        same tokens on gpt-4o: $0.0014 — 2.7× saved  
        Escalation: security — the diff touches sensitive paths: src/auth.rs  
        This month: $0.0005 (no repository cap)

        <!-- equitr:job=[job-1] -->
        ");
    }
    t.finish().await;
}

on_both_stores!(a_review_github_refuses_fails_its_check_run_and_tells_the_thread_what_it_cost);
async fn a_review_github_refuses_fails_its_check_run_and_tells_the_thread_what_it_cost(
    backend: Backend,
) {
    let Some(t) = a_pr_with_an_auth_bypass().serve_on(backend).await else {
        return;
    };
    let head = t.gh.branch_sha(REPO, "tidy").unwrap();
    // GitHub refuses the review (the pull request is gone), and a 404 is not retried (a 422,
    // a comment it cannot place, is folded into the body instead: see
    // serve_review_rounds.rs).
    t.gh.fail_next(
        "POST",
        &format!("/repos/{REPO}/pulls/2/reviews"),
        404,
        vec![],
    );
    let job = t.comment(2, "/equitr review").await.accepted();
    assert_eq!(t.wait_job(job).await, Ended::Failed);
    // Issue 9, item 12: the thread gets one plain sentence; the details (the status, the
    // request) are the operator's, in the log and the job's row. The progress comment
    // became the failure, and the money was spent even though nothing posted.
    let failure = t.next_comment(2).await;
    assert!(!failure.contains("GitHub answered 404"), "{failure}");
    assert!(!failure.contains("ghs_"), "{failure}");
    insta::allow_duplicates! {
        insta::assert_snapshot!(failure, @"
        ❌ This job failed: an internal error stopped job [job-1]; the operator's log has the details

        Spent on models before it stopped: $0.0005. Nothing more will happen for this request; ask again to retry.

        <!-- equitr:job=[job-1] -->
        ");
    }
    t.log_line("GitHub answered 404 to POST").await;
    assert!(t.gh.reviews(REPO, 2).is_empty());
    let run = t.check_run(&head).await;
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    insta::allow_duplicates! {
        insta::assert_snapshot!(run, @"
        equitr / review: failure (completed)

        ## equitr / review

        The review could not be completed: GitHub answered 404 to POST /repos/Codertocat/Hello-World/pulls/2/reviews: Injected failure (request [request-id])
        ");
    }
    t.finish().await;
}
