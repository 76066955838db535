//! The operator's dashboard over HTTP (the browser test is `tests/dashboard.rs`): locked by
//! its token, read-only, and showing the jobs, spend and transcripts `serve` really recorded,
//! with hostile text escaped and secrets redacted, on both stores.

mod support;

use serde_json::json;
use support::harness::{Tester, World};
use support::llm_server::Reply;

const TOKEN: &str = "dashboard-token-0123456789abcdef";

/// octocat asks a question whose answer carries markup and the service's own model key.
fn asked() -> World {
    World::default()
        .issue(1, "Question", "", "Codertocat")
        .env("EQUITR_DASHBOARD_TOKEN", TOKEN)
        .worker([
            Reply::tool("read_file", json!({"path": "README.md"})),
            Reply::tool(
                "finish",
                json!({"summary": "Line 1. <script>window.pwned=1</script> sk-test-serve <img src=x onerror=alert(1)>"}),
            ),
        ])
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(t: &Tester, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/dashboard/login", t.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap()
}

async fn get(
    t: &Tester,
    path: &str,
    cookie: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = client().get(format!("{}{path}", t.url()));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

support::harness::on_both_stores!(the_dashboard_is_locked_read_only_and_shows_what_happened);
async fn the_dashboard_is_locked_read_only_and_shows_what_happened(
    backend: support::harness::Backend,
) {
    let Some(t) = asked().serve_on(backend).await else {
        return;
    };
    t.comment(1, "/equitr ask where is the heading?")
        .await
        .accepted();
    let answer = t.next_comment(1).await;
    assert!(answer.contains("$0.0001"), "{answer}");

    // Locked: every page without the cookie, or with a made-up one, is 401 and shows nothing.
    for path in [
        "/dashboard",
        "/dashboard/spend",
        "/dashboard/jobs",
        "/dashboard/jobs/1",
    ] {
        for cookie in [None, Some("equitr_dashboard=0000")] {
            let (status, body, _) = get(&t, path, cookie).await;
            assert_eq!(status, 401, "{path} {cookie:?}");
            assert!(
                !body.contains("octocat") && !body.contains("$0.0001"),
                "{body}"
            );
        }
    }
    assert_eq!(
        login(&t, "wrong-token-0123456789").await.status().as_u16(),
        401
    );
    let (status, form, headers) = get(&t, "/dashboard/login", None).await;
    assert_eq!(status, 200);
    assert!(form.contains(r#"name="token""#), "{form}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script"), "{csp}");

    let ok = login(&t, TOKEN).await;
    assert_eq!(ok.status().as_u16(), 303);
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is not the token: {set}");
    let cookie = set.split(';').next().unwrap().to_string();

    // The overview counts the one job, and the month's spend is the answer's cost.
    let (status, overview, _) = get(&t, "/dashboard", Some(&cookie)).await;
    assert_eq!(status, 200, "{overview}");
    assert!(
        overview.contains(r#"<tr data-kind="ask" data-state="succeeded">"#),
        "{overview}"
    );
    assert!(
        overview.contains(r#"<td class="count">1</td>"#),
        "{overview}"
    );
    assert!(
        overview.contains(r#"<tr data-repo="Codertocat/Hello-World">"#),
        "{overview}"
    );
    assert!(overview.contains("$0.0001"), "{overview}");
    assert!(
        overview.contains(r#"<span id="queue-depth">0</span>"#),
        "{overview}"
    );

    // The list links the job; its page shows the transcript, escaped and redacted.
    let (_, list, _) = get(&t, "/dashboard/jobs?kind=ask", Some(&cookie)).await;
    assert!(
        list.contains(r#"<tr data-job="1" data-state="succeeded">"#),
        "{list}"
    );
    assert!(list.contains("comment on #1 by Codertocat"), "{list}");
    let (_, none, _) = get(&t, "/dashboard/jobs?kind=review", Some(&cookie)).await;
    assert!(none.contains("No job matches."), "{none}");
    let (status, job, _) = get(&t, "/dashboard/jobs/1", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(job.contains(r#"id="transcript""#), "{job}");
    assert!(job.contains("worker → read_file"), "{job}");
    assert!(job.contains("worker model call: gpt-4o-mini"), "{job}");
    assert!(!job.contains("<script>") && !job.contains("<img"), "{job}");
    assert!(job.contains("&lt;script&gt;"), "{job}");
    assert!(
        !job.contains("sk-test-serve"),
        "the model key is redacted: {job}"
    );
    let (_, spend, _) = get(&t, "/dashboard/spend", Some(&cookie)).await;
    assert!(
        spend.contains(r#"<svg class="spend-chart" data-repo="Codertocat/Hello-World""#),
        "{spend}"
    );
    assert!(spend.contains(r#"id="spend-table""#), "{spend}");
    let (status, _, _) = get(&t, "/dashboard/jobs/999", Some(&cookie)).await;
    assert_eq!(status, 404);

    // Read-only: nothing but GET (and the login form's POST) is routed.
    let post = client()
        .post(format!("{}/dashboard/jobs/1", t.url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_there_is_no_dashboard() {
    let t = World::default().serve().await;
    let (status, _, _) = get(&t, "/dashboard/login", None).await;
    assert_eq!(status, 404);
    t.finish().await;
}
