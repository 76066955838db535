//! `scripts/bench-dashboard`: how fast the dashboard's pages render from a store of 100,000
//! jobs (200,000 ledger rows, 90 days of them), through the real `serve` binary over HTTP.
//! Ignored in `cargo test`; the script runs it.
//!
//! Each page is fetched 30 times after a warm-up, alternating with `GET /healthz` on the same
//! connection pool — the floor of an HTTP round trip to this process — and it prints the
//! median and the 95th percentile of each, and the page's median less the floor's (what the
//! page itself costs) against the goal of 50 ms for a page of 50 jobs.

mod support;

use std::time::{Duration, Instant};

use support::harness::{Backend, World};

const TOKEN: &str = "bench-dashboard-token-0123456789";
const JOBS: i64 = 100_000;
const REPOS: i64 = 40;
const DAY: i64 = 86_400_000;

async fn seed(db_url: &str) {
    use sqlx::Connection as _;
    let mut c = sqlx::SqliteConnection::connect(db_url).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut tx = c.begin().await.unwrap();
    let kinds = ["implement", "review", "ask", "revise", "refactor"];
    // No job is left queued: the service would claim it.
    let states = ["succeeded", "succeeded", "succeeded", "failed", "succeeded"];
    for i in 0..JOBS {
        let created = now - 90 * DAY + i * (90 * DAY / JOBS);
        let repo = format!("org/repo-{}", i % REPOS);
        let state = states[(i % 5) as usize];
        sqlx::query(
            "INSERT INTO jobs (kind, repo, installation_id, payload, state, attempts, max_attempts, \
             result, error, thread, created_at, updated_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, 1, 3, $6, $7, $8, $9, $9, $10)",
        )
        .bind(kinds[(i % 5) as usize])
        .bind(&repo)
        .bind(1 + i % 4)
        .bind(format!(r#"{{"event":{{"type":"comment","number":{},"author":{{"login":"user{}","id":1}}}}}}"#, i % 500, i % 97))
        .bind(state)
        .bind((state == "succeeded").then(|| format!(r#"{{"summary":"done {i}"}}"#)))
        .bind((state == "failed").then_some("the model gave out"))
        .bind(format!("{repo}#{}", i % 500))
        .bind(created)
        .bind((state != "queued").then_some(created + 60_000))
        .execute(&mut *tx)
        .await
        .unwrap();
        let id = i + 1;
        for (role, model, cost) in [
            ("worker", "gpt-4o-mini", 150_000_000i64),
            ("supervisor", "gpt-4o", 2_500_000_000),
        ] {
            sqlx::query(
                "INSERT INTO ledger (job_id, repo, installation_id, month, role, model, state, \
                 reserved_picos, cost_picos, input_tokens, output_tokens, created_at, settled_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'settled', $7, $7, 1000, 100, $8, $8)",
            )
            .bind(id)
            .bind(&repo)
            .bind(1 + i % 4)
            .bind(equitr_coder::store::month_of(created))
            .bind(role)
            .bind(model)
            .bind(cost)
            .bind(created)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 95 / 100]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-dashboard"]
async fn bench_dashboard_pages() {
    let Some(t) = World::default()
        .env("EQUITR_DASHBOARD_TOKEN", TOKEN)
        .serve_on(Backend::Sqlite)
        .await
    else {
        return;
    };
    let started = Instant::now();
    seed(t.db_url()).await;
    println!(
        "bench-dashboard: seeded {JOBS} jobs and {} ledger rows in {:.1} s",
        JOBS * 2,
        started.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/dashboard/login", t.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let get = |path: String| {
        let (client, cookie, url) = (client.clone(), cookie.clone(), t.url());
        async move {
            let at = Instant::now();
            let r = client
                .get(format!("{url}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
            let body = r.text().await.unwrap();
            (at.elapsed(), body)
        }
    };
    let pages = [
        ("jobs, newest 50", "/dashboard/jobs".to_string()),
        (
            "jobs, one repository",
            "/dashboard/jobs?repo=org%2Frepo-7".to_string(),
        ),
        ("jobs, failed", "/dashboard/jobs?state=failed".to_string()),
        (
            "jobs, page 1000",
            format!("/dashboard/jobs?before={}", JOBS / 2),
        ),
        (
            "jobs, a date range",
            "/dashboard/jobs?kind=review&from=2000-01-01&to=2100-01-01".to_string(),
        ),
        ("overview", "/dashboard".to_string()),
        ("spend, 90 days x 40 repos", "/dashboard/spend".to_string()),
        ("a job", format!("/dashboard/jobs/{}", JOBS - 3)),
    ];
    for (name, path) in pages {
        let (_, body) = get(path.clone()).await;
        if path.starts_with("/dashboard/jobs") && !path.contains("/jobs/") {
            assert_eq!(
                body.matches("<tr data-job=").count(),
                50,
                "{name}: a page of 50"
            );
        }
        let (mut page, mut floor) = (Vec::new(), Vec::new());
        for _ in 0..30 {
            page.push(get(path.clone()).await.0);
            let at = Instant::now();
            client
                .get(format!("{}/healthz", t.url()))
                .send()
                .await
                .unwrap();
            floor.push(at.elapsed());
        }
        let ((p50, p95), (f50, _)) = (stats(page), stats(floor));
        println!(
            "bench-dashboard: {name:<28} median {p50:>7.2} ms  p95 {p95:>7.2} ms  (/healthz {f50:.2} ms; the page itself {:.2} ms, {:.0}x the floor)",
            p50 - f50,
            p50 / f50.max(0.001)
        );
    }
    t.abandon().await;
}
