//! The operator's dashboard in a real browser: headless Chromium through chromedriver
//! (tests/support/browser.rs) against the real `serve`, its store seeded by real jobs run
//! with the scripted models. Screenshots of each page land in
//! `target/dashboard-screenshots/` (`sqlite-overview.png`, …). Without Chromium outside CI
//! the tests say so and pass.

mod support;

use serde_json::json;

use support::browser::Browser;
use support::harness::{on_both_stores, Backend, Ended, Tester, World, REPO, SECRET};
use support::llm_server::Reply;

/// serve's `EQUITR_DASHBOARD_TOKEN`.
const TOKEN: &str = "dashboard-token-0123456789abcdef";
/// The model's text the transcript carries: markup that would run if it were not escaped.
const HOSTILE: &str = "<script>window.pwned=1</script>";
/// The API key the harness gives serve for the scripted models: a secret serve knows.
const API_KEY: &str = "sk-test-serve";

const CHECK: &str = "pub fn check(p: &str) -> bool {\n    verify(p)\n}\n";
const BYPASS: &str = "pub fn check(p: &str) -> bool {\n    p == \"admin\"\n}\n";

/// The worker's two turns of a review of `src/auth.rs`, and the supervisor's one (the path
/// is sensitive, so it looks too), as in tests/serve_reviews.rs.
fn review_replies() -> (Vec<Reply>, Vec<Reply>) {
    (
        vec![
            Reply::tools(vec![
                ("read_file", json!({"path": "src/auth.rs"})),
                (
                    "report_finding",
                    json!({"path": "src/auth.rs", "line": 2, "severity": "high", "title": "Hard-coded password", "body": "Anyone can log in with `admin`.", "suggestion": "    verify(p)"}),
                ),
            ]),
            Reply::tool("finish", json!({"summary": "Auth bypass."})),
        ],
        vec![Reply::tool("finish", json!({"summary": "Agree: reject."}))],
    )
}

/// Issue #1 (labelled `bug`: an implement job), and octocat's PRs #2 and #3, each replacing
/// the check in `src/auth.rs` with a hard-coded password (a review each). The implement
/// job's worker ends with a summary holding markup and serve's API key.
fn seeded_world() -> World {
    let (review_worker, review_supervisor) = review_replies();
    World::default()
        .repo(&[("README.md", "# Helo\n"), ("src/auth.rs", CHECK)])
        .repo_config("triggers: { label: bug }\n")
        .pr(2, "tidy", &[("src/auth.rs", Some(BYPASS))], "octocat")
        .pr(3, "tidy-more", &[("src/auth.rs", Some(BYPASS))], "octocat")
        .env("EQUITR_DASHBOARD_TOKEN", TOKEN)
        .worker([
            Reply::tool(
                "write_file",
                json!({"path": "README.md", "content": "# Hello\n"}),
            ),
            Reply::tool(
                "finish",
                json!({"summary": format!("Fixed the heading. {HOSTILE} The key was {API_KEY}.")}),
            ),
        ])
        .worker(review_worker.clone())
        .supervisor(review_supervisor.clone())
        .worker(review_worker)
        .supervisor(review_supervisor)
}

/// The bold total of a cost table (`| **total** | … | **$0.0005** |`), or the money a failed
/// job spent (`Spent on models before it stopped: $0.0005.`).
fn stated_cost(comment: &str) -> String {
    let re = regex::Regex::new(
        r"\*\*total\*\*.*\*\*(\$\d+\.\d{4})\*\*|before it stopped: (\$\d+\.\d{4})",
    )
    .unwrap();
    let c = re
        .captures(comment)
        .unwrap_or_else(|| panic!("no cost in {comment}"));
    c.get(1).or_else(|| c.get(2)).unwrap().as_str().to_string()
}

/// `$0.0011` → 11 (tenths of a thousandth of a dollar, the comments' precision).
fn ten_thousandths(usd: &str) -> u64 {
    let (whole, frac) = usd.trim_start_matches('$').split_once('.').unwrap();
    whole.parse::<u64>().unwrap() * 10_000 + frac.parse::<u64>().unwrap()
}

/// The jobs the scenario ran, with what the bot said each cost.
struct Seeded {
    implement: i64,
    review: i64,
    failed: i64,
    costs: Vec<(i64, String)>,
}

/// Three real jobs, one after another (the scripted replies are one queue per model): the
/// implement job of issue #1, a review of PR #2, and a review of PR #3 that GitHub refuses.
async fn seed(t: &Tester) -> Seeded {
    let implement = t.label(1, "bug").await.accepted();
    assert_eq!(t.wait_job(implement).await, Ended::Succeeded);
    let pr = t.next_pr().await;
    assert_eq!(pr.head, "equitr/issue-1");
    let summary = t.next_comment(1).await;
    assert!(!summary.contains(API_KEY), "{summary}");
    let implement_cost = stated_cost(&summary.raw);

    let review = t.comment(2, "/equitr review").await.accepted();
    assert_eq!(t.wait_job(review).await, Ended::Succeeded);
    let head = t.gh.branch_sha(REPO, "tidy").unwrap();
    assert_eq!(t.next_review(2).await.event, "REQUEST_CHANGES");
    let _ = t.check_run(&head).await;
    let review_cost = stated_cost(&t.next_comment(2).await.raw);

    t.gh.fail_next(
        "POST",
        &format!("/repos/{REPO}/pulls/3/reviews"),
        404,
        vec![],
    );
    let failed = t.comment(3, "/equitr review").await.accepted();
    assert_eq!(t.wait_job(failed).await, Ended::Failed);
    let head = t.gh.branch_sha(REPO, "tidy-more").unwrap();
    let _ = t.check_run(&head).await;
    let failure = t.next_comment(3).await;
    assert!(failure.contains("This job failed"), "{failure}");
    let failed_cost = stated_cost(&failure.raw);

    Seeded {
        implement,
        review,
        failed,
        costs: vec![
            (implement, implement_cost),
            (review, review_cost),
            (failed, failed_cost),
        ],
    }
}

/// `GET url` with `cookie` (none: `None`), redirects not followed: status, headers, body.
async fn fetch(url: &str, cookie: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http.get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// What a request without the session sees: 401 and a pointer to the login, no data.
#[track_caller]
fn assert_locked_out(url: &str, status: u16, body: &str, s: &Seeded) {
    assert_eq!(status, 401, "{url}: {body}");
    // What the page says, without its style sheet (whose colours look like `#1`).
    let text = match (body.find("<style>"), body.find("</style>")) {
        (Some(a), Some(b)) => format!("{}{}", &body[..a], &body[b..]),
        _ => body.to_string(),
    };
    assert!(text.contains("/dashboard/login"), "{url}: {body}");
    for data in [REPO, "implement", "review", "$0.", "Auth bypass", "pwned"] {
        assert!(
            !text.contains(data),
            "{url} shows {data:?} without a session: {text}"
        );
    }
    for id in [s.implement, s.review, s.failed] {
        assert!(
            !text.contains(&format!("#{id}")),
            "{url} shows job {id}: {text}"
        );
    }
}

/// Nothing a page must never carry: a script, the model's markup as markup, a secret.
async fn assert_inert(browser: &Browser, page: &str) {
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('script').length;")
            .await,
        json!(0),
        "{page} has a script element"
    );
    assert_eq!(
        browser.eval("return typeof window.pwned;").await,
        json!("undefined"),
        "{page} ran the model's script"
    );
    let source = browser.source().await;
    for secret in [API_KEY, TOKEN, SECRET] {
        assert!(
            !source.contains(secret),
            "{page} shows the secret {secret:?}"
        );
    }
    assert!(!source.contains("<script"), "{page}: {source}");
    // The style sheet applies: the Content-Security-Policy allows it by its hash.
    assert_eq!(
        browser
            .eval("return getComputedStyle(document.body).backgroundColor;")
            .await,
        json!("rgb(246, 248, 250)"),
        "{page} is unstyled: the CSP refused its style sheet?"
    );
    let refused: Vec<String> = browser
        .console()
        .await
        .into_iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Refused"))
        .collect();
    assert_eq!(
        refused,
        Vec::<String>::new(),
        "{page}: the browser refused parts of it"
    );
}

/// The status of the page the browser shows, as the browser got it.
async fn page_status(browser: &Browser) -> serde_json::Value {
    browser
        .eval("return performance.getEntriesByType('navigation')[0].responseStatus;")
        .await
}

// The operator's way through the dashboard of a store that three real jobs filled: locked
// without the session (401, no data, for every page, with no cookie, a made-up one or the
// token itself), the login form (a wrong token: 401; the right one: 303 and a Secure,
// HttpOnly, SameSite=Strict cookie for /dashboard that is not the token), the overview's
// counts and the month's spend as the bot's comments stated it, the spend chart, the jobs
// list and its filters, a transcript whose model text holds `<script>` and serve's API key
// (shown as text, the key redacted, no script element, nothing run) and a failed job's
// failure. Every page: a CSP without scripts that still lets its style sheet apply, and no
// refusal in the browser's console. A screenshot of each.
on_both_stores!(the_operator_logs_in_and_reads_the_overview_the_spend_the_jobs_and_a_transcript);
async fn the_operator_logs_in_and_reads_the_overview_the_spend_the_jobs_and_a_transcript(
    backend: Backend,
) {
    let Some(t) = seeded_world().serve_on(backend).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        t.abandon().await;
        return;
    };
    let started = std::time::Instant::now();
    let shot = |page: &str| {
        format!(
            "{}-{page}",
            match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
        )
    };
    let s = seed(&t).await;
    let seeded_in = started.elapsed();
    let base = t.url();

    // The stored transcript really holds the markup (and the key, redacted when stored), so
    // what the pages show below is the dashboard's doing.
    let events = t.store().await.events(s.implement).await.unwrap();
    let stored: String = events.iter().map(|e| e.data.to_string()).collect();
    assert!(stored.contains(HOSTILE), "{stored}");
    assert!(!stored.contains(API_KEY), "{stored}");

    // ---- locked: every page without the session, or with a wrong one, is a 401 ----
    let pages = [
        "/dashboard".to_string(),
        "/dashboard/spend".to_string(),
        "/dashboard/jobs".to_string(),
        format!("/dashboard/jobs?state=failed&repo={REPO}"),
        format!("/dashboard/jobs/{}", s.implement),
        format!("/dashboard/jobs/{}", s.failed),
    ];
    for page in &pages {
        let url = format!("{base}{page}");
        let (status, _, body) = fetch(&url, None).await;
        assert_locked_out(&url, status, &body, &s);
        let (status, _, body) = fetch(&url, Some("equitr_dashboard=0123abcd")).await;
        assert_locked_out(&url, status, &body, &s);
        // The token itself is not a session.
        let (status, _, body) = fetch(&url, Some(&format!("equitr_dashboard={TOKEN}"))).await;
        assert_locked_out(&url, status, &body, &s);
    }
    let wrong = reqwest::Client::new()
        .post(format!("{base}/dashboard/login"))
        .form(&[("token", "not-the-token-0123456789")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/dashboard/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 303);
    assert_eq!(right.headers()["location"], "/dashboard");
    let set_cookie = right.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard"] {
        assert!(
            set_cookie.split("; ").any(|a| a == attribute),
            "{attribute} in {set_cookie}"
        );
    }

    // In the browser too, before logging in.
    browser.goto(&format!("{base}/dashboard")).await;
    assert_eq!(page_status(&browser).await, json!(401));
    assert!(
        browser.text("main").await.starts_with("401"),
        "{}",
        browser.source().await
    );
    assert!(browser.cookie("equitr_dashboard").await.is_none());

    // ---- the login form ----
    browser.goto(&format!("{base}/dashboard/login")).await;
    let form = browser
        .wait_for("form[method=post][action='/dashboard/login']")
        .await;
    assert_eq!(
        form.find(fantoccini::Locator::Css("input#token"))
            .await
            .unwrap()
            .attr("type")
            .await
            .unwrap()
            .as_deref(),
        Some("password")
    );
    assert_inert(&browser, "the login page").await;
    browser.screenshot(&shot("login")).await;
    // A wrong token: 401, the form again, no cookie.
    browser
        .wait_for("input#token")
        .await
        .send_keys("not-the-token-0123456789")
        .await
        .unwrap();
    browser
        .wait_for("button#login")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "the login page saying no",
            "return document.body.innerText.includes('That is not the token.');",
        )
        .await;
    assert_eq!(page_status(&browser).await, json!(401));
    assert!(browser.cookie("equitr_dashboard").await.is_none());
    // The right one.
    browser
        .wait_for("input#token")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    browser
        .wait_for("button#login")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "the overview",
            "return document.querySelector('#jobs-24h') !== null;",
        )
        .await;
    assert_eq!(browser.url().await, format!("{base}/dashboard"));
    assert_eq!(page_status(&browser).await, json!(200));

    // The session: a Secure, HttpOnly, SameSite=Strict cookie for /dashboard, accepted by
    // Chromium on http://127.0.0.1 (a secure context), that is not the token.
    let cookie = browser
        .cookie("equitr_dashboard")
        .await
        .expect("the session cookie on http://127.0.0.1");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/dashboard"));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()),
        Some("Strict".to_string())
    );
    assert!(!cookie.value().contains(TOKEN));
    assert_eq!(browser.eval("return document.cookie;").await, json!(""));
    let session = format!("equitr_dashboard={}", cookie.value());

    // Every page, with the session, carries a Content-Security-Policy without scripts.
    for page in pages.iter().chain(["/dashboard/login".to_string()].iter()) {
        let (status, headers, body) = fetch(&format!("{base}{page}"), Some(&session)).await;
        assert_eq!(status, 200, "{page}: {body}");
        let csp = headers
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{page} has no CSP"))
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{page}: {csp}");
        assert!(!csp.contains("script"), "{page}: {csp}");
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
    }

    // ---- the overview: the numbers of the three jobs ----
    let count = |kind: &str, state: &str| {
        format!("#jobs-24h tr[data-kind={kind}][data-state={state}] td.count")
    };
    assert_eq!(browser.text(&count("implement", "succeeded")).await, "1");
    assert_eq!(browser.text(&count("review", "succeeded")).await, "1");
    assert_eq!(browser.text(&count("review", "failed")).await, "1");
    assert_eq!(browser.find_all("#jobs-24h tr[data-kind]").await.len(), 3);
    // The month's spend is what the three comments said, added up: $0.000054 (the worker's)
    // for the implement job and $0.000504 (the worker's and the supervisor's) for each
    // review show as $0.0001 + $0.0005 + $0.0005 on GitHub and as $0.0011 here.
    let said: u64 = s.costs.iter().map(|(_, c)| ten_thousandths(c)).sum();
    assert_eq!(said, 11, "{:?}", s.costs);
    let repo_row = format!("#spend tr[data-repo='{REPO}']");
    assert_eq!(
        browser.text(&format!("{repo_row} td.spent")).await,
        "$0.0011"
    );
    assert_eq!(browser.text(&format!("{repo_row} td.cap")).await, "no cap");
    assert_eq!(browser.find_all("#spend tr[data-repo]").await.len(), 1);
    assert_eq!(
        browser
            .text("#installations tr[data-installation='1'] td.spent")
            .await,
        "$0.0011"
    );
    assert_eq!(browser.text("#refusals .count").await, "0");
    assert_eq!(browser.text("#queue-depth").await, "0");
    assert_eq!(browser.text("#oldest-queued").await, "none");
    assert_inert(&browser, "the overview").await;
    browser.screenshot(&shot("overview")).await;

    // ---- spend over time ----
    browser
        .wait_for("header a[href='/dashboard/spend']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "the spend page",
            "return document.querySelector('#spend-table') !== null;",
        )
        .await;
    let chart = browser
        .wait_for(&format!("svg.spend-chart[data-repo='{REPO}']"))
        .await;
    // Today's bars: the worker's (blue) and the supervisor's (purple) share of the day.
    let bars = chart
        .find_all(fantoccini::Locator::Css(
            "rect[fill='#0969da'], rect[fill='#8250df']",
        ))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "{}", chart.html(false).await.unwrap());
    let table = browser
        .text(&format!("#spend-table tr[data-repo='{REPO}']"))
        .await;
    assert!(table.contains("$0.0011"), "{table}");
    assert_inert(&browser, "the spend page").await;
    browser.screenshot(&shot("spend")).await;

    // ---- the jobs list, filtered in its form ----
    browser
        .wait_for("header a[href='/dashboard/jobs']")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "the jobs list",
            "return document.querySelector('table#jobs') !== null;",
        )
        .await;
    let listed = |rows: Vec<fantoccini::elements::Element>| async move {
        let mut ids = Vec::new();
        for r in rows {
            ids.push(
                r.attr("data-job")
                    .await
                    .unwrap()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap(),
            );
        }
        ids
    };
    // Newest first.
    assert_eq!(
        listed(browser.find_all("table#jobs tr[data-job]").await).await,
        vec![s.failed, s.review, s.implement]
    );
    assert!(
        browser.find_all("a#next").await.is_empty(),
        "three jobs fit one page"
    );
    for (id, cost) in &s.costs {
        let row = browser.text(&format!("tr[data-job='{id}']")).await;
        assert!(row.contains(cost.as_str()), "job {id} cost {cost}: {row}");
    }
    assert_inert(&browser, "the jobs list").await;
    browser.screenshot(&shot("jobs")).await;
    browser
        .wait_for("form.filters select[name=state]")
        .await
        .select_by_value("failed")
        .await
        .unwrap();
    browser
        .wait_for("form.filters button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "the failed jobs",
            "return location.search.includes('state=failed') && document.readyState === 'complete';",
        )
        .await;
    assert_eq!(
        listed(browser.find_all("table#jobs tr[data-job]").await).await,
        vec![s.failed]
    );
    // A day range before today matches nothing.
    browser
        .goto(&format!(
            "{base}/dashboard/jobs?from=2020-01-01&to=2020-01-02"
        ))
        .await;
    assert!(browser.find_all("table#jobs tr[data-job]").await.is_empty());
    browser.goto(&format!("{base}/dashboard/jobs")).await;

    // ---- a job and its transcript ----
    browser
        .wait_for(&format!(
            "tr[data-job='{}'] a[href='/dashboard/jobs/{}']",
            s.implement, s.implement
        ))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_until(
            "the job's page",
            "return document.querySelector('#transcript') !== null;",
        )
        .await;
    assert_eq!(
        browser.url().await,
        format!("{base}/dashboard/jobs/{}", s.implement)
    );
    // One .event per recorded event; the model's markup shows as text, the key redacted.
    assert_eq!(
        browser.find_all("#transcript .event").await.len(),
        events.len()
    );
    let transcript = browser.text("#transcript").await;
    assert!(
        transcript.contains(&format!(
            "Fixed the heading. {HOSTILE} The key was [redacted]."
        )),
        "{transcript}"
    );
    assert!(transcript.contains("write_file"), "{transcript}");
    assert_eq!(browser.text("#job-cost").await, s.costs[0].1);
    assert!(browser.find_all("#failure").await.is_empty());
    assert_inert(&browser, "the implement job").await;
    browser.screenshot(&shot("job")).await;

    // The failed job says why.
    browser
        .goto(&format!("{base}/dashboard/jobs/{}", s.failed))
        .await;
    let failure = browser.text("#failure").await;
    assert!(failure.contains("404"), "{failure}");
    assert_eq!(browser.text("#job-cost").await, s.costs[2].1);
    assert_inert(&browser, "the failed job").await;
    browser.screenshot(&shot("job-failed")).await;

    browser.close().await;
    eprintln!(
        "dashboard scenario ({backend:?}): jobs seeded in {seeded_in:?}, all in {:?}",
        started.elapsed()
    );
    t.finish().await;
}
