//! The four pages: the overview, spend over time, the jobs list and one job.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::{chart, page_shell, shown, transcript};
use crate::money::pricing::Usd;
use crate::scrub::urlencode;
use crate::server::App;
use crate::store::dashboard::{JobFilter, JobLine, RepoMonth};
use crate::store::UnixMillis;

const DAY: i64 = 86_400_000;
/// Jobs per page of the list.
pub const PAGE: i64 = 50;

/// Picodollars from the store as the dashboard shows money.
pub(super) fn usd(picos: i64) -> String {
    Usd::from_picos(u64::try_from(picos).unwrap_or(0)).to_string()
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub(super) fn when(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// How long, readably.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

fn error_page(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard: the store did not answer");
    let body = page_shell(
        "Error",
        html! { p.over { "The database did not answer; see the service's log." } },
        true,
    );
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// The web address of GitHub for the API the service talks to.
fn github_web(app: &App) -> String {
    let api = app.cfg.api_url.trim_end_matches('/');
    if api == "https://api.github.com" {
        return "https://github.com".into();
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_string()
}

pub async fn overview(State(app): State<Arc<App>>) -> Response {
    let now = app.store.now();
    let month = crate::store::month_of(now);
    let read = async {
        Ok::<_, crate::store::StoreError>((
            app.store.jobs_since(now - DAY).await?,
            app.store.month_by_repo(&month).await?,
            app.store.budget_refusals(now - 30 * DAY).await?,
            app.store.queue().await?,
        ))
    };
    let (jobs, repos, refusals, queue) = match read.await {
        Ok(r) => r,
        Err(e) => return error_page(e),
    };
    let inst_cap = app
        .cfg
        .installation_monthly_usd
        .and_then(Usd::from_dollars_f64)
        .map(|u| i64::try_from(u.picos()).unwrap_or(i64::MAX));
    let mut installations: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for r in &repos {
        let e = installations.entry(r.installation_id).or_default();
        e.0 += r.spent_picos;
        e.1 += r.reserved_picos;
    }
    let total: i64 = jobs.iter().map(|j| j.count).sum();
    let body = html! {
        h1 { "Overview" }
        h2 { "Jobs in the last 24 hours (" (total) ")" }
        table #jobs-24h {
            tr { th { "kind" } th { "state" } th { "jobs" } }
            @for j in &jobs {
                tr data-kind=(j.kind) data-state=(j.state) {
                    td { a href={ "/dashboard/jobs?kind=" (j.kind) "&state=" (j.state) } { (j.kind) } }
                    td { (j.state) } td.count { (j.count) }
                }
            }
        }
        h2 { "Spend this month (" (month) ") per repository" }
        (repo_table(&repos))
        h2 { "Per installation" }
        table #installations {
            tr { th { "installation" } th { "spent" } th { "held by running calls" } th { "cap" } }
            @for (id, (spent, reserved)) in &installations {
                tr data-installation=(id) {
                    td { (id) }
                    td.spent.over[over(*spent, inst_cap)] { (usd(*spent)) }
                    td.reserved { (usd(*reserved)) }
                    td.cap { (inst_cap.map_or("no cap".to_string(), usd)) }
                }
            }
        }
        h2 { "Budget refusals" }
        p #refusals { span.count { (refusals) } " job(s) in the last 30 days declined before their first call or stopped at a cap." }
        h2 { "Queue" }
        p #queue {
            span #queue-depth { (queue.depth) } " queued; oldest: "
            span #oldest-queued {
                @match queue.oldest {
                    Some(t) => { (when(t)) " (" (span(now - t)) " ago)" }
                    None => { "none" }
                }
            }
        }
    };
    page_shell("Overview", body, true).into_response()
}

fn over(spent: i64, cap: Option<i64>) -> bool {
    cap.is_some_and(|c| spent > c)
}

fn repo_table(repos: &[RepoMonth]) -> Markup {
    html! {
        table #spend {
            tr { th { "repository" } th { "spent" } th { "held by running calls" } th { "cap" } th { "used" } }
            @for r in repos {
                tr data-repo=(r.repo) {
                    td { a href={ "/dashboard/jobs?repo=" (urlencode(&r.repo)) } { (r.repo) } }
                    td.spent.over[over(r.spent_picos, r.cap_picos)] { (usd(r.spent_picos)) }
                    td.reserved { (usd(r.reserved_picos)) }
                    td.cap { (r.cap_picos.map_or("no cap".to_string(), usd)) }
                    td.num {
                        @if let Some(c) = r.cap_picos.filter(|c| *c > 0) {
                            (format!("{:.0} %", r.spent_picos as f64 * 100.0 / c as f64))
                        }
                    }
                }
            }
        }
    }
}

pub async fn spend(State(app): State<Arc<App>>) -> Response {
    let now = app.store.now();
    let since = (now / DAY - 89) * DAY;
    let month = crate::store::month_of(now);
    let (days, repos) = match tokio::try_join!(
        app.store.daily_spend(since),
        app.store.month_by_repo(&month)
    ) {
        Ok(r) => r,
        Err(e) => return error_page(e),
    };
    let supervisor = app
        .cfg
        .llm
        .resolve(crate::config::AgentRole::Supervisor)
        .ok()
        .map(|m| m.model);
    let caps: BTreeMap<String, Option<i64>> = repos
        .iter()
        .map(|r| (r.repo.clone(), r.cap_picos))
        .collect();
    let charts = chart::per_repo(&days, &caps, since / DAY, supervisor.as_deref());
    let body = html! {
        h1 { "Spend over the last 90 days" }
        p.legend {
            span { span.sw.worker {} "worker" } span { span.sw.supervisor {} "supervisor" }
            span { span.sw.mtd {} "month to date" } span { span.sw.cap {} "monthly cap" }
        }
        (charts.svg)
        h2 { "Totals, and the same tokens on the supervisor model alone" }
        (charts.table)
    };
    page_shell("Spend", body, true).into_response()
}

/// The list's filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    repo: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
}

fn day_start(s: &Option<String>) -> Option<UnixMillis> {
    let d = chrono::NaiveDate::parse_from_str(s.as_deref()?.trim(), "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

fn some(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(200).collect())
}

pub async fn jobs(State(app): State<Arc<App>>, Query(f): Query<Filters>) -> Response {
    let filter = JobFilter {
        repo: some(&f.repo),
        kind: some(&f.kind),
        state: some(&f.state),
        from: day_start(&f.from),
        to: day_start(&f.to).map(|t| t + DAY),
        before: f.before,
    };
    let mut rows = match app.store.job_page(&filter, PAGE + 1).await {
        Ok(r) => r,
        Err(e) => return error_page(e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let web = github_web(&app);
    let next = more
        .then(|| rows.last().map(|r| r.id))
        .flatten()
        .map(|last| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("repo", &f.repo),
                ("kind", &f.kind),
                ("state", &f.state),
                ("from", &f.from),
                ("to", &f.to),
            ] {
                if let Some(v) = some(v) {
                    q.append_pair(k, &v);
                }
            }
            q.append_pair("before", &last.to_string());
            format!("/dashboard/jobs?{}", q.finish())
        });
    let body = html! {
        h1 { "Jobs" }
        form.filters method="get" action="/dashboard/jobs" {
            input name="repo" placeholder="owner/repo" value=[some(&f.repo)];
            input name="kind" placeholder="kind" value=[some(&f.kind)];
            select name="state" {
                option value="" { "any state" }
                @for s in ["queued", "running", "succeeded", "failed"] {
                    option value=(s) selected[some(&f.state).as_deref() == Some(s)] { (s) }
                }
            }
            input name="from" type="date" value=[some(&f.from)];
            input name="to" type="date" value=[some(&f.to)];
            button type="submit" { "Filter" }
        }
        table #jobs {
            tr { th { "job" } th { "kind" } th { "repository" } th { "trigger" } th { "state" } th { "created (UTC)" } th { "took" } th { "cost" } th { "outcome" } th { "on GitHub" } }
            @for j in &rows { (job_row(j, &web)) }
        }
        @if rows.is_empty() { p.muted { "No job matches." } }
        @if let Some(n) = next { p { a #next href=(n) { "Older jobs →" } } }
    };
    page_shell("Jobs", body, true).into_response()
}

fn job_row(j: &JobLine, web: &str) -> Markup {
    html! {
        tr data-job=(j.id) data-state=(j.state) {
            td { a href={ "/dashboard/jobs/" (j.id) } { "#" (j.id) } }
            td { (j.kind) } td { (j.repo) } td { (shown(&trigger(&j.payload), 120)) }
            td { (j.state) } td { (when(j.created_at)) }
            td.num { @if let Some(f) = j.finished_at { (span(f - j.created_at)) } }
            td.num { (usd(j.cost_picos)) }
            td { (shown(&outcome(j), 160)) }
            td { @if let Some(link) = github_link(j, web) { a href=(link) rel="noreferrer" { "open" } } }
        }
    }
}

/// What started a job, from its queued payload: the event and who sent it, or the schedule.
pub(super) fn trigger(payload: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    if let Some(s) = v.get("schedule") {
        let name = s.get("name");
        return format!(
            "schedule {}",
            name.and_then(|n| n.as_str()).unwrap_or_default()
        );
    }
    let e = v.get("event").unwrap_or(&v);
    let what = e.get("type").and_then(|t| t.as_str()).unwrap_or("event");
    let who = ["sender", "author"]
        .iter()
        .find_map(|k| e.get(*k)?.get("login")?.as_str())
        .unwrap_or_default();
    let number = e.get("number").and_then(|n| n.as_u64());
    match (number, who.is_empty()) {
        (Some(n), false) => format!("{what} on #{n} by {who}"),
        (Some(n), true) => format!("{what} on #{n}"),
        (None, _) => what.to_string(),
    }
}

/// The job's outcome line: its summary, its error, or its state.
pub(super) fn outcome(j: &JobLine) -> String {
    if let Some(e) = &j.error {
        return e.lines().next().unwrap_or_default().to_string();
    }
    let summary = j
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|v| v.get("summary")?.as_str().map(str::to_string));
    summary.unwrap_or_else(|| j.state.clone())
}

/// The job's pull request or review (a link in its summary to this GitHub), else its thread.
pub(super) fn github_link(j: &JobLine, web: &str) -> Option<String> {
    let prefix = format!("{web}/");
    let from_summary = crate::scrub::scrub(&outcome(j))
        .split_whitespace()
        .find_map(|w| {
            let w = w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '/');
            (w.starts_with(&prefix) && w.chars().all(|c| c.is_ascii_graphic()))
                .then(|| w.to_string())
        });
    from_summary.or_else(|| {
        let (repo, n) = j.thread.as_deref()?.split_once('#')?;
        let n: u64 = n.parse().ok()?;
        Some(format!("{web}/{repo}/issues/{n}"))
    })
}

pub async fn job(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    let read = async {
        Ok::<_, crate::store::StoreError>((
            app.store.job_line(id).await?,
            app.store.transcript(id).await?,
        ))
    };
    let (line, events) = match read.await {
        Ok((Some(l), e)) => (l, e),
        Ok((None, _)) => {
            let body = page_shell("No such job", html! { p { "No job #" (id) "." } }, true);
            return (StatusCode::NOT_FOUND, body).into_response();
        }
        Err(e) => return error_page(e),
    };
    let web = github_web(&app);
    let body = html! {
        h1 { "Job #" (line.id) ": " (line.kind) " on " (line.repo) }
        table #job {
            tr { th { "state" } td { (line.state) " (attempt " (line.attempts) ")" } }
            tr { th { "trigger" } td { (shown(&trigger(&line.payload), 300)) } }
            tr { th { "created (UTC)" } td { (when(line.created_at)) } }
            tr { th { "took" } td { @if let Some(f) = line.finished_at { (span(f - line.created_at)) } @else { "—" } } }
            tr { th { "cost" } td #job-cost { (usd(line.cost_picos)) } }
            tr { th { "outcome" } td { (shown(&outcome(&line), 2000)) } }
            @if let Some(link) = github_link(&line, &web) {
                tr { th { "on GitHub" } td { a href=(link) rel="noreferrer" { (link) } } }
            }
        }
        @if let Some(e) = &line.error {
            h2 { "Failure" }
            div #failure { pre { (shown(e, 20_000)) } }
        }
        h2 { "Transcript (" (events.len()) " events)" }
        (transcript::render(&events))
    };
    page_shell(&format!("Job #{id}"), body, true).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(result: Option<&str>, thread: Option<&str>) -> JobLine {
        JobLine {
            id: 1,
            kind: "review".into(),
            repo: "o/r".into(),
            state: "succeeded".into(),
            attempts: 1,
            payload: "{}".into(),
            result: result.map(str::to_string),
            error: None,
            thread: thread.map(str::to_string),
            created_at: 0,
            finished_at: Some(1000),
            cost_picos: 0,
        }
    }

    #[test]
    fn a_job_links_to_its_pull_request_or_its_thread_on_this_github_only() {
        let web = "https://github.com";
        let j = line(
            Some(r#"{"summary":"review 9: https://github.com/o/r/pull/2#pullrequestreview-9."}"#),
            None,
        );
        assert_eq!(
            github_link(&j, web).as_deref(),
            Some("https://github.com/o/r/pull/2#pullrequestreview-9")
        );
        let j = line(
            Some(r#"{"summary":"see https://evil.example/x"}"#),
            Some("o/r#4"),
        );
        assert_eq!(
            github_link(&j, web).as_deref(),
            Some("https://github.com/o/r/issues/4")
        );
        assert_eq!(github_link(&line(None, None), web), None);
    }

    #[test]
    fn the_trigger_names_the_event_and_who_sent_it() {
        let p = r#"{"event":{"type":"comment","number":3,"author":{"login":"octocat","id":1}}}"#;
        assert_eq!(trigger(p), "comment on #3 by octocat");
        assert_eq!(trigger("not json"), "event");
        let p = r#"{"schedule":{"kind":"refactor","name":"weekly","task":"t"}}"#;
        assert_eq!(trigger(p), "schedule weekly");
    }
}
