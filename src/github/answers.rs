//! Reading GitHub's answers: how long it asks us to wait, its error message (never a body
//! that is not one), its dates; and our backoff between tries.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

/// GitHub: a secondary rate limit without `retry-after` or a reset means "wait at least one
/// minute before retrying".
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// How long GitHub asks us to wait: `Retry-After`, or the primary limit's reset when
/// `x-ratelimit-remaining` is 0. `None` for a 403 that is a real permission refusal.
pub(super) fn rate_limit_wait(resp: &reqwest::Response, now: u64) -> Option<Duration> {
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_string)
    };
    if let Some(secs) = h("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if h("x-ratelimit-remaining").as_deref() == Some("0") {
        let reset = h("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())?;
        return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
    }
    None
}

/// A 403/429 body that names a secondary rate limit but no header says how long: GitHub asks
/// for at least a minute.
pub(super) fn secondary_limit(body: &str) -> Option<Duration> {
    let message = error_message(body).to_ascii_lowercase();
    // "You have exceeded a secondary rate limit", and the older "abuse detection mechanism".
    (message.contains("secondary rate limit") || message.contains("abuse"))
        .then_some(SECONDARY_LIMIT_WAIT)
}

/// Full-jitter exponential backoff: up to 0.5 s, 1 s, 2 s, 4 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap_ms = 500u64 << attempt.min(6).saturating_sub(1);
    Duration::from_millis(rand::thread_rng().gen_range(0..=cap_ms))
}

/// GitHub's `message`, at most 200 characters of it. A body that is not a GitHub error (a
/// proxy's page, an echo of the request) is never copied: it can carry what was sent.
pub(super) fn error_message(text: &str) -> String {
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string));
    let msg = match msg {
        Some(m) => {
            let mut short: String = m.chars().take(200).collect();
            if short.len() < m.len() {
                short.push('…');
            }
            short
        }
        None if text.trim().is_empty() => "an empty answer".to_string(),
        None => format!(
            "an answer that is not a GitHub error ({} bytes)",
            text.len()
        ),
    };
    msg.replace(['\n', '\r'], " ")
}

/// `2016-07-11T22:14:10Z` (the UTC form GitHub sends) → unix seconds.
pub(super) fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    // Days from civil (Howard Hinnant's algorithm).
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe;
    let days_since_epoch = days.checked_sub(719_468)?;
    Some(days_since_epoch * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_a_github_error_is_never_copied() {
        assert_eq!(
            error_message("<html>Authorization: token ghs_secret</html>"),
            "an answer that is not a GitHub error (44 bytes)"
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2016-07-11T22:14:10Z"), Some(1_468_275_250));
        assert_eq!(parse_rfc3339("2016-07-11 22:14:10"), None);
    }

    #[test]
    fn a_secondary_limit_without_headers_waits_a_minute() {
        // GitHub's body for a secondary rate limit (docs.github.com, "Rate limits for the REST
        // API"); a plain permission refusal is not waited on.
        let limited = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"403"}"#;
        assert_eq!(secondary_limit(limited), Some(Duration::from_secs(60)));
        let refused = r#"{"message":"Resource not accessible by integration","status":"403"}"#;
        assert_eq!(secondary_limit(refused), None);
    }

    #[test]
    fn backoff_is_bounded() {
        for a in 1..10 {
            assert!(backoff(a) <= Duration::from_millis(16_000));
        }
    }
}
