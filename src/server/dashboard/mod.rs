//! The operator's dashboard: what the bot is doing, why it did it, and what it costs — jobs,
//! transcripts and spend per repository, as server-rendered HTML under `/dashboard`.
//!
//! **Locked.** It exists only when `EQUITR_DASHBOARD_TOKEN` is set. The login page takes the
//! token once and sets a cookie holding an HMAC of it (never the token), `HttpOnly`, `Secure`,
//! `SameSite=Strict`, scoped to `/dashboard`; every other page checks it and answers 401 with
//! no data otherwise. Nothing on it changes anything: every page is a `GET`.
//!
//! **Self-contained.** No script at all, no asset fetched from anywhere: the style sheet is
//! inline (allowed by its hash in the Content-Security-Policy), charts are SVG drawn on the
//! server. Everything from GitHub or a model is escaped by the templates (`maud`) and passes
//! the same secret redaction as what the bot posts.

mod chart;
mod pages;
mod transcript;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

use super::App;
use crate::scrub::constant_eq;

/// The session cookie's name.
pub const COOKIE: &str = "equitr_dashboard";

/// The style sheet, inline; the CSP allows exactly this text by its hash.
const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}\
header{background:#24292f;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}\
header a{color:#fff;text-decoration:none}header b{margin-right:20px}\
main{padding:20px;max-width:1200px}h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;background:#fff;margin:8px 0}th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}\
th{background:#eaeef2}td.num,td.count,td.spent,td.cap,td.reserved{text-align:right;font-variant-numeric:tabular-nums}\
.over{color:#cf222e;font-weight:600}.muted{color:#57606a}\
.event{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:8px 0;padding:8px 12px}\
.event h3{font-size:13px;margin:0 0 4px}.event.supervisor{border-left:4px solid #8250df}.event.worker{border-left:4px solid #0969da}\
.event.error{border-left:4px solid #cf222e}pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:6px;margin:4px 0;max-height:480px;overflow:auto}\
form.filters input,form.filters select{margin-right:8px}#failure{background:#ffebe9;border:1px solid #cf222e;padding:10px;border-radius:6px}\
.legend span{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}\
.sw.worker{background:#0969da}.sw.supervisor{background:#8250df}.sw.cap{background:#cf222e}.sw.mtd{background:#1a7f37}";

/// The Content-Security-Policy of every dashboard response: nothing but this page's own
/// inline style; no script, no frame, no form posting anywhere but the login. Worked out
/// once, not per response.
fn csp() -> &'static HeaderValue {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        // Base64 and ASCII text only: always a valid header value.
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    })
}

/// How long a sign-in lasts, enforced by the service (the cookie's `Max-Age` only asks the
/// browser).
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// The cookie's value for `token`, signed in at `at` (milliseconds): `AT.HMAC`, so the cookie
/// never holds the token itself, a copied cookie stops working after [`SESSION_MS`], and a
/// new token logs every browser out.
fn session(token: &str, at: i64) -> String {
    format!("{at}.{}", sign(token, at))
}

fn sign(token: &str, at: i64) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(format!("equitr-dashboard-session-v2|{at}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `value` is a session of `token` that is still good at `now`.
fn valid(token: &str, value: &str, now: i64) -> bool {
    let Some((at, mac)) = value.split_once('.') else {
        return false;
    };
    let Ok(at) = at.parse::<i64>() else {
        return false;
    };
    let fresh = at <= now + 60_000 && now - at < SESSION_MS;
    fresh && constant_eq(mac.as_bytes(), sign(token, at).as_bytes())
}

/// The dashboard's routes (an empty router when it is off).
pub fn router(app: Arc<App>) -> Router {
    if app.cfg.dashboard.is_none() {
        return Router::new();
    }
    let pages = Router::new()
        .route("/dashboard", get(pages::overview))
        .route("/dashboard/spend", get(pages::spend))
        .route("/dashboard/jobs", get(pages::jobs))
        .route("/dashboard/jobs/:id", get(pages::job))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), require))
        .route("/dashboard/login", get(login_page).post(login))
        .layer(axum::middleware::from_fn(headers))
        .layer(axum::extract::DefaultBodyLimit::max(4096));
    pages.with_state(app)
}

/// The headers every dashboard response carries.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp().clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Whether the request carries this token's session cookie.
fn signed_in(app: &App, headers: &HeaderMap) -> bool {
    let Some(d) = &app.cfg.dashboard else {
        return false;
    };
    let now = app.store.now();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && valid(&d.token, v, now))
}

/// 401 and nothing else for a request without the session.
async fn require(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if signed_in(&app, req.headers()) {
        return next.run(req).await;
    }
    unauthorized()
}

fn unauthorized() -> Response {
    let body = page_shell(
        "Sign in",
        html! { p { "401: sign in first at " a href="/dashboard/login" { "/dashboard/login" } "." } },
        false,
    );
    (StatusCode::UNAUTHORIZED, body).into_response()
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, None)
}

fn login_form(status: StatusCode, problem: Option<&str>) -> Response {
    let body = page_shell(
        "Sign in",
        html! {
            h1 { "equitr-coder dashboard" }
            @if let Some(p) = problem { p.over { (p) } }
            form method="post" action="/dashboard/login" {
                label for="token" { "Token (EQUITR_DASHBOARD_TOKEN) " }
                input type="password" name="token" id="token" autocomplete="current-password" required;
                " "
                button type="submit" id="login" { "Sign in" }
            }
        },
        false,
    );
    (status, body).into_response()
}

/// `POST /dashboard/login`: the right token sets the session cookie; a wrong one gets 401.
async fn login(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let Some(d) = &app.cfg.dashboard else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    if !constant_eq(given.as_bytes(), d.token.as_bytes()) {
        return login_form(StatusCode::UNAUTHORIZED, Some("That is not the token."));
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/dashboard; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        session(&d.token, app.store.now()),
        SESSION_MS / 1000
    );
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/dashboard")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// A whole page: the style, the navigation (when signed in) and `body`.
fn page_shell(title: &str, body: Markup, nav: bool) -> axum::response::Html<String> {
    axum::response::Html(shell(title, body, nav).into_string())
}

fn shell(title: &str, body: Markup, nav: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · equitr-coder" }
                style { (PreEscaped(CSS)) }
            }
            body {
                @if nav {
                    header {
                        b { "equitr-coder" }
                        a href="/dashboard" { "Overview" }
                        a href="/dashboard/spend" { "Spend" }
                        a href="/dashboard/jobs" { "Jobs" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Text from GitHub or a model as the dashboard may show it: secrets redacted, at most
/// `max` characters (the rest counted, not shown). Escaping is the template's.
pub(super) fn shown(text: &str, max: usize) -> String {
    let clean = crate::scrub::scrub(text);
    let n = clean.chars().count();
    if n <= max {
        return clean;
    }
    let cut: String = clean.chars().take(max).collect();
    format!("{cut}… ({} more characters)", n - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_not_the_token_changes_with_it_and_expires() {
        let token = "0123456789abcdef0123";
        let a = session(token, 1_000);
        assert!(!a.contains(token));
        assert!(valid(token, &a, 1_000));
        assert!(!valid("0123456789abcdef0124", &a, 1_000), "another token");
        assert!(!valid(token, &a, 1_000 + SESSION_MS), "twelve hours later");
        assert!(
            !valid(token, &session(token, 1_000_000), 1_000),
            "from the future"
        );
        assert!(!valid(token, "1000.00", 1_000));
        let forged = format!("{}.{}", 5_000, a.split_once('.').unwrap().1);
        assert!(!valid(token, &forged, 5_000), "the time is signed too");
    }

    #[test]
    fn the_policy_allows_the_inline_style_and_no_script() {
        let p = csp().to_str().unwrap();
        assert!(
            p.starts_with("default-src 'none'; style-src 'sha256-"),
            "{p}"
        );
        assert!(!p.contains("script"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
    }

    #[test]
    fn shown_text_is_cut_and_counted() {
        assert_eq!(shown("abcdef", 3), "abc… (3 more characters)");
        assert_eq!(shown("abc", 3), "abc");
    }
}
