//! HTTP plumbing shared by the provider clients: one attempt of a JSON call with a deadline,
//! and the classification of failures into [`ProviderError`] from the status code and the
//! structured error body (never from message text).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::ProviderError;

/// A client could not be built from its configuration.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientBuildError {
    /// The header value is never included: extra headers often carry secrets.
    #[error("invalid HTTP header {name:?}: name or value has characters HTTP does not allow")]
    InvalidHeader { name: String },
    #[error("the API key has characters that cannot be sent in an HTTP header")]
    InvalidApiKey,
}

/// Builds a header map from configured pairs plus the credential header, all marked
/// sensitive so they stay out of debug output.
pub(crate) fn header_map(
    pairs: &[(String, String)],
    secret: Option<(&'static str, String)>,
) -> Result<HeaderMap, ClientBuildError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let bad = || ClientBuildError::InvalidHeader { name: name.clone() };
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let mut v = HeaderValue::from_str(value).map_err(|_| bad())?;
        // Extra headers are where Azure keys and proxy tokens go.
        v.set_sensitive(true);
        map.append(n, v);
    }
    if let Some((name, value)) = secret {
        let mut v = HeaderValue::from_str(&value).map_err(|_| ClientBuildError::InvalidApiKey)?;
        v.set_sensitive(true);
        map.insert(HeaderName::from_static(name), v);
    }
    Ok(map)
}

/// A successful (2xx) HTTP answer's body text.
pub(crate) struct HttpOk {
    pub body: String,
}

/// Sends one request and reads the whole body within `timeout`, turning every failure
/// into a classified [`ProviderError`]. `secret` is scrubbed from any message.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    secret: Option<&str>,
) -> Result<HttpOk, ProviderError> {
    // reqwest's own timeout covers the body too; the outer one is a backstop so a
    // trickling server can never hold a call past its deadline.
    let call = async {
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| from_reqwest(e, timeout))?;
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers(), SystemTime::now());
        let request_id = ["x-request-id", "request-id"]
            .iter()
            .find_map(|h| resp.headers().get(*h)?.to_str().ok())
            .map(|v| {
                v.chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(80)
                    .collect::<String>()
            });
        // The answer has begun: a failure from here on is a body cut off mid-way, and the
        // provider may have generated (and billed) all of it.
        let body = resp
            .text()
            .await
            .map_err(|e| match from_reqwest(e, timeout) {
                ProviderError::Connection(m) | ProviderError::InvalidResponse(m) => {
                    ProviderError::CutOff(m)
                }
                other => other,
            })?;
        if (200..300).contains(&status) {
            Ok(HttpOk { body })
        } else {
            Err(classify(status, retry_after, &body, request_id.as_deref()))
        }
    };
    let result = match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Timeout(timeout)),
    };
    result.map_err(|e| scrub(e, secret))
}

/// Maps a transport error. The URL is dropped: with Azure-style deployments it can carry
/// query parameters nobody wants in logs.
pub(crate) fn from_reqwest(err: reqwest::Error, timeout: Duration) -> ProviderError {
    if err.is_timeout() {
        return ProviderError::Timeout(timeout);
    }
    let is_decode = err.is_decode();
    // Where it was going, without path or query: scheme, host and port.
    let at = err.url().map(|u| {
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
    });
    let connect = err.is_connect();
    let text = one_line(&error_chain(&err.without_url()));
    if connect {
        // No connection was made (refused, DNS, TLS handshake): nothing was sent.
        ProviderError::Unreachable {
            at: at.unwrap_or_else(|| "its API URL".into()),
            message: text,
        }
    } else if is_decode {
        ProviderError::InvalidResponse(text)
    } else {
        // Refused connections, resets mid-answer, protocol errors: all transient transport.
        ProviderError::Connection(text)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// The structured part of an error body. Both dialects nest it under `error`:
/// OpenAI `{"error":{"type","code","message"}}`, Anthropic
/// `{"type":"error","error":{"type","message"}}`. Some OpenAI-compatible servers (Ollama)
/// send `{"error":"text"}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

pub(crate) fn parse_error_body(body: &str) -> ErrorBody {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<serde_json::Value>,
    }
    let Ok(Envelope { error: Some(err) }) = serde_json::from_str::<Envelope>(body) else {
        return ErrorBody::default();
    };
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        // OpenAI has sent numeric codes from some endpoints.
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    match &err {
        serde_json::Value::String(s) => ErrorBody {
            message: Some(s.clone()),
            ..ErrorBody::default()
        },
        serde_json::Value::Object(o) => ErrorBody {
            kind: text(o.get("type")),
            code: text(o.get("code")),
            message: text(o.get("message")),
        },
        _ => ErrorBody::default(),
    }
}

/// Error types/codes that mean "out of money", which no amount of waiting fixes.
const QUOTA_KINDS: &[&str] = &[
    "insufficient_quota",
    "billing_error",
    "billing_hard_limit_reached",
    "billing_not_active",
];

/// Classifies a non-2xx answer by status and structured body.
pub(crate) fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
    request_id: Option<&str>,
) -> ProviderError {
    let err = parse_error_body(body);
    let is = |names: &[&str]| {
        [err.kind.as_deref(), err.code.as_deref()]
            .into_iter()
            .flatten()
            .any(|k| names.contains(&k))
    };
    let mut message = summarize(status, &err, body);
    if let Some(id) = request_id.filter(|id| !id.is_empty()) {
        message.push_str(&format!(" (request {id})"));
    }
    if is(QUOTA_KINDS) || status == 402 {
        return ProviderError::QuotaExceeded { message };
    }
    if status == 529 || is(&["overloaded_error"]) {
        return ProviderError::Overloaded {
            retry_after,
            message,
        };
    }
    match status {
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        500..=599 => ProviderError::Server {
            status,
            retry_after,
            message,
        },
        401 | 403 => ProviderError::Auth { status, message },
        400 | 413 if is(&["context_length_exceeded"]) => {
            ProviderError::ContextLengthExceeded { message }
        }
        400..=499 => ProviderError::BadRequest { status, message },
        _ => ProviderError::InvalidResponse(format!("unexpected HTTP status {status}: {message}")),
    }
}

/// One line for humans: the provider's message with its type and code. A body that is not
/// a provider error (a proxy's page, an echo of the request) is never copied: it can carry
/// what was sent.
fn summarize(status: u16, err: &ErrorBody, body: &str) -> String {
    let label = match (err.kind.as_deref(), err.code.as_deref()) {
        (Some(k), Some(c)) if k != c => Some(format!("{k}/{c}")),
        (Some(k), _) => Some(k.to_string()),
        (None, Some(c)) => Some(c.to_string()),
        (None, None) => None,
    };
    let base = match (&err.message, label) {
        (Some(m), Some(k)) if !m.is_empty() => format!("{k}: {m}"),
        (Some(m), None) if !m.is_empty() => m.clone(),
        (_, Some(k)) => k,
        _ if body.trim().is_empty() => format!("HTTP {status} with an empty body"),
        _ => format!(
            "HTTP {status} with a body that is not a provider error ({} bytes)",
            body.len()
        ),
    };
    short(&one_line(&base))
}

/// A provider's message is a reason, not a transcript: at most 200 characters of it.
fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX).collect();
    out.push('…');
    out
}

/// Collapses whitespace runs (newlines included) and caps the length, on a char boundary.
pub(crate) fn one_line(s: &str) -> String {
    const MAX: usize = 400;
    let mut out = String::with_capacity(s.len().min(MAX + 3));
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX {
            break;
        }
    }
    if out.len() > MAX {
        let mut cut = MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Removes the API key from an error message: some providers echo (parts of) the key back,
/// and error messages end up in logs and PR comments.
pub(crate) fn scrub(err: ProviderError, secret: Option<&str>) -> ProviderError {
    let Some(secret) = secret.filter(|s| s.len() >= 4) else {
        return err;
    };
    let clean = |m: String| m.replace(secret, "[redacted]");
    match err {
        ProviderError::RateLimited {
            retry_after,
            message,
        } => ProviderError::RateLimited {
            retry_after,
            message: clean(message),
        },
        ProviderError::QuotaExceeded { message } => ProviderError::QuotaExceeded {
            message: clean(message),
        },
        ProviderError::Overloaded {
            retry_after,
            message,
        } => ProviderError::Overloaded {
            retry_after,
            message: clean(message),
        },
        ProviderError::Server {
            status,
            retry_after,
            message,
        } => ProviderError::Server {
            status,
            retry_after,
            message: clean(message),
        },
        ProviderError::Auth { status, message } => ProviderError::Auth {
            status,
            message: clean(message),
        },
        ProviderError::ContextLengthExceeded { message } => ProviderError::ContextLengthExceeded {
            message: clean(message),
        },
        ProviderError::BadRequest { status, message } => ProviderError::BadRequest {
            status,
            message: clean(message),
        },
        ProviderError::Timeout(d) => ProviderError::Timeout(d),
        ProviderError::Connection(m) => ProviderError::Connection(clean(m)),
        ProviderError::InvalidResponse(m) => ProviderError::InvalidResponse(clean(m)),
        ProviderError::CutOff(m) => ProviderError::CutOff(clean(m)),
        ProviderError::Unreachable { at, message } => ProviderError::Unreachable {
            at,
            message: clean(message),
        },
    }
}

/// The server's requested wait: `retry-after-ms` (OpenAI, fractional milliseconds) first,
/// then `retry-after` as delta-seconds or an HTTP-date (a date in the past means "now").
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
        return None;
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Joins a configured base URL and an endpoint path without doubling or losing the slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Parses a 2xx body, mapping failure to `InvalidResponse` with a short reason.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &str,
    what: &str,
) -> Result<T, ProviderError> {
    serde_json::from_str(body).map_err(|e| {
        let reason = one_line(&format!("{what}: {e}"));
        // JSON that stops before its end is an answer cut off in transit.
        if e.is_eof() {
            ProviderError::CutOff(reason)
        } else {
            ProviderError::InvalidResponse(reason)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(
                &headers(&[("retry-after", "7"), ("retry-after-ms", "250")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "soon")]), now),
            None
        );
        assert_eq!(parse_retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn classification_uses_structure_not_text() {
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(matches!(
            classify(429, None, quota, None),
            ProviderError::QuotaExceeded { .. }
        ));
        // Same words, but structured as a plain rate limit: still a rate limit.
        let rl = r#"{"error":{"message":"insufficient_quota","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert!(matches!(
            classify(429, None, rl, None),
            ProviderError::RateLimited { .. }
        ));
        let ctx = r#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert!(matches!(
            classify(400, None, ctx, None),
            ProviderError::ContextLengthExceeded { .. }
        ));
        let over = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(matches!(
            classify(503, None, over, None),
            ProviderError::Overloaded { .. }
        ));
        assert!(matches!(
            classify(529, None, "<html>", None),
            ProviderError::Overloaded { .. }
        ));
        assert!(matches!(
            classify(502, None, "", None),
            ProviderError::Server { status: 502, .. }
        ));
        assert!(matches!(
            classify(403, None, "{}", None),
            ProviderError::Auth { status: 403, .. }
        ));
        assert!(matches!(
            classify(404, None, r#"{"error":"model 'x' not found"}"#, None),
            ProviderError::BadRequest { status: 404, .. }
        ));
    }

    #[test]
    fn messages_are_one_line_and_scrubbed() {
        let body = "{\"error\":{\"message\":\"Incorrect API key provided: sk-secret-123.\\nSee docs\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
        let err = scrub(classify(401, None, body, None), Some("sk-secret-123"));
        let text = err.to_string();
        assert!(!text.contains("sk-secret-123"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn an_error_names_status_reason_and_request_id_never_the_body() {
        let echo = "<html>your request: Authorization: Bearer sk-proj-abc</html>";
        let e = classify(502, None, echo, Some("req_42"));
        let text = e.to_string();
        assert!(
            !text.contains("sk-proj") && !text.contains("<html>"),
            "{text}"
        );
        assert!(
            text.contains("HTTP 502 with a body that is not a provider error"),
            "{text}"
        );
        assert!(text.contains("(request req_42)"), "{text}");
        let long = format!(
            r#"{{"error":{{"type":"invalid_request_error","code":"x","message":"{}"}}}}"#,
            "a".repeat(5000)
        );
        let text = classify(400, None, &long, None).to_string();
        assert!(
            text.len() < 400 && text.contains("invalid_request_error/x: aaa"),
            "{text}"
        );
    }

    #[test]
    fn join_url_handles_slashes() {
        assert_eq!(join_url("http://h/v1/", "/models"), "http://h/v1/models");
        assert_eq!(join_url("http://h/v1", "models"), "http://h/v1/models");
    }
}
