//! A job's transcript as a readable conversation: the escalation class and its reason, the
//! supervisor's plan, each worker turn with its tool calls and their (truncated) outputs,
//! questions to the supervisor and its answers, gate verdicts, each model call with its
//! tokens and cost, and the job's progress. Every text is redacted and escaped; long ones are
//! cut, with what was left out counted.

use maud::{html, Markup};
use serde_json::Value;

use super::pages::when;
use super::shown;
use crate::store::dashboard::TranscriptEvent;

/// The most characters of one text shown (a tool's output, a plan).
const MAX_TEXT: usize = 4_000;

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn cost(v: &Value) -> String {
    match v.get("cost") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => format!("${n}"),
        _ => "no price".into(),
    }
}

/// The heading, the role class and the body of one event.
fn describe(kind: &str, v: &Value) -> (String, &'static str, Markup) {
    let role = match v.get("role").and_then(Value::as_str) {
        Some("supervisor") => "supervisor",
        Some("worker") => "worker",
        _ => "",
    };
    let pre = |key: &str| html! { pre { (shown(&text(v, key), MAX_TEXT)) } };
    match kind {
        "classified" => (
            format!("Escalation class: {}", text(v, "class")),
            "",
            html! { p { (shown(&text(v, "reason"), MAX_TEXT)) @if v["by_model"] == true { " (the worker model was asked)" } } },
        ),
        "plan" => ("The supervisor's plan".into(), "supervisor", pre("text")),
        "turn" => (
            format!("{role} turn {}", text(v, "iteration")),
            role,
            html! {},
        ),
        "model_call" => {
            let u = &v["usage"];
            (
                format!("{role} model call: {}", text(v, "model")),
                role,
                html! { p { (u["input_tokens"]) " in (" (u["cached_input_tokens"]) " cached) / " (u["output_tokens"]) " out — " (cost(v)) } },
            )
        }
        "tool_call" => (
            format!("{role} → {}", text(v, "name")),
            role,
            pre("arguments"),
        ),
        "tool_result" => {
            let failed = v["is_error"] == true;
            (
                format!(
                    "{role} ← {}{}",
                    text(v, "name"),
                    if failed { " (failed)" } else { "" }
                ),
                if failed { "error" } else { role },
                pre("preview"),
            )
        }
        "escalation" => (
            "The worker asks the supervisor".into(),
            "worker",
            pre("question"),
        ),
        "supervisor_answer" => ("The supervisor answers".into(), "supervisor", pre("answer")),
        "gate_review" => {
            let approved = v["approved"] == true;
            (
                format!(
                    "Supervisor review {}: {}",
                    text(v, "round"),
                    if approved { "approved" } else { "rejected" }
                ),
                if approved { "supervisor" } else { "error" },
                html! { (pre("reasons")) @if let Some(files) = v["files"].as_array() { p.muted { "Files: " (shown(&files.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "), MAX_TEXT)) } } },
            )
        }
        "budget_reached" => ("Budget reached".into(), "error", pre("message")),
        "progress" => (
            format!("Progress: {}", shown(&text(v, "step"), 300)),
            "",
            html! {},
        ),
        "note" => ("Note".into(), "", pre("message")),
        "finished" => (
            format!("Finished: {}", shown(&text(v, "outcome"), 200)),
            "",
            pre("summary"),
        ),
        _ => {
            let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
            (
                kind.to_string(),
                "",
                html! { pre { (shown(&pretty, MAX_TEXT)) } },
            )
        }
    }
}

/// The transcript, one `.event` per recorded event.
pub fn render(events: &[TranscriptEvent]) -> Markup {
    html! {
        div #transcript {
            @if events.is_empty() { p.muted { "Nothing was recorded for this job." } }
            @for e in events {
                @let v: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                @let (head, role, body) = describe(&e.kind, &v);
                div class={ "event " (role) } data-kind=(e.kind) {
                    h3 { (shown(&head, 300)) " " span.muted { (when(e.at)) } }
                    (body)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_secrets_redacted() {
        crate::scrub::register_secret("sk-dashboard-test-secret-0123456789");
        let e = TranscriptEvent {
            kind: "plan".into(),
            data: r#"{"kind":"plan","text":"<script>alert(1)</script> key sk-dashboard-test-secret-0123456789"}"#.into(),
            at: 0,
        };
        let html = render(&[e]).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            !html.contains("sk-dashboard-test-secret-0123456789"),
            "{html}"
        );
    }

    #[test]
    fn a_long_output_is_cut_and_counted() {
        let long = "x".repeat(MAX_TEXT + 10);
        let e = TranscriptEvent {
            kind: "tool_result".into(),
            data: serde_json::json!({"kind": "tool_result", "role": "worker", "name": "read_file", "is_error": false, "preview": long}).to_string(),
            at: 0,
        };
        assert!(render(&[e])
            .into_string()
            .contains("… (10 more characters)"));
    }
}
