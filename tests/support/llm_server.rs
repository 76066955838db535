//! A scripted LLM server for tests: real HTTP on a loopback port, speaking OpenAI Chat
//! Completions (`POST /v1/chat/completions`) and Anthropic Messages (`POST /v1/messages`),
//! with `GET /v1/models` shared by both.
//!
//! Tests push replies per model id; each request pops the next reply for its `model` and gets
//! it rendered in the dialect of the path it called. Every request is recorded and checked
//! against the providers' tool-call invariants (see [`ScriptedLlm::violations`]).
//!
//! A request for a model with no replies left is answered 500 "script exhausted for model X",
//! so a test that makes more calls than it scripted fails loudly.
#![allow(dead_code)] // Each test binary uses a different part of the support code.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub path: String,
    /// The body's `model`, when it had one.
    pub model: Option<String>,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The parsed body (`Null` for bodiless requests, a string if it was not JSON).
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Text(String),
    Tools(Vec<(String, Value)>),
    Status {
        code: u16,
        body: Value,
    },
    Raw {
        code: u16,
        body: String,
    },
    Hang,
    Malformed,
    /// A 200 whose body stops half-way: the connection is dropped mid-body.
    CutOff(Box<Kind>),
}

/// A scripted answer. Successful replies report usage 100 input (0 cached) / 20 output
/// tokens unless [`Reply::usage`] says otherwise.
#[derive(Debug, Clone)]
pub struct Reply {
    kind: Kind,
    input: u64,
    cached: u64,
    output: u64,
    retry_after: Option<u64>,
    headers: Vec<(String, String)>,
    /// Text sent alongside tool calls.
    lead_text: Option<String>,
    /// Report the output as cut by `max_tokens`.
    truncated: bool,
    /// Answer only after this long.
    delay: Option<std::time::Duration>,
}

impl Reply {
    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            input: 100,
            cached: 0,
            output: 20,
            retry_after: None,
            headers: Vec::new(),
            lead_text: None,
            truncated: false,
            delay: None,
        }
    }

    /// A plain text answer (finish reason stop / end_turn).
    pub fn text(s: &str) -> Reply {
        Reply::of(Kind::Text(s.to_string()))
    }

    /// One tool call.
    pub fn tool(name: &str, args: Value) -> Reply {
        Reply::tools(vec![(name, args)])
    }

    /// Parallel tool calls, in order. Ids are `call_N` (OpenAI) / `toolu_N` (Anthropic),
    /// N counting tool calls served by this server from 1.
    pub fn tools(calls: Vec<(&str, Value)>) -> Reply {
        Reply::of(Kind::Tools(
            calls.into_iter().map(|(n, a)| (n.to_string(), a)).collect(),
        ))
    }

    /// Text the model says before its tool calls ("I'll read the file first.").
    pub fn with_text(mut self, s: &str) -> Reply {
        self.lead_text = Some(s.to_string());
        self
    }

    /// Finish reason `length` / stop reason `max_tokens` instead of the natural one.
    pub fn truncated(mut self) -> Reply {
        self.truncated = true;
        self
    }

    /// Usage as the client should normalise it: `input` includes `cached`.
    pub fn usage(mut self, input: u64, cached: u64, output: u64) -> Reply {
        self.input = input;
        self.cached = cached;
        self.output = output;
        self
    }

    /// An error answer with this status and JSON body, sent as is.
    pub fn status(code: u16, body: Value) -> Reply {
        Reply::of(Kind::Status { code, body })
    }

    /// A verbatim body (e.g. a recorded fixture) with this status, as `application/json`.
    pub fn raw(code: u16, body: impl Into<String>) -> Reply {
        Reply::of(Kind::Raw {
            code,
            body: body.into(),
        })
    }

    /// Adds a `Retry-After: secs` header.
    pub fn retry_after(mut self, secs: u64) -> Reply {
        self.retry_after = Some(secs);
        self
    }

    /// Adds any response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Answers only after `d` (a slow model).
    pub fn after(mut self, d: std::time::Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    /// Never answers; the client's timeout has to end the call.
    pub fn hang() -> Reply {
        Reply::of(Kind::Hang)
    }

    /// 200 with a body that is not JSON.
    pub fn malformed() -> Reply {
        Reply::of(Kind::Malformed)
    }

    /// This reply's 200 body cut off half-way: the server drops the connection mid-body.
    pub fn cut_off(mut self) -> Reply {
        self.kind = Kind::CutOff(Box::new(self.kind));
        self
    }
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<String, VecDeque<Reply>>,
    models: Vec<String>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    tool_ids: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// Handle on a running scripted server; clones share it.
#[derive(Clone)]
pub struct ScriptedLlm {
    inner: Shared,
    addr: std::net::SocketAddr,
}

impl ScriptedLlm {
    /// Binds `127.0.0.1:0` and serves until the test's runtime ends.
    pub async fn start() -> ScriptedLlm {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/messages", post(chat))
            .route("/v1/models", get(models))
            .fallback(unknown)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedLlm { inner, addr }
    }

    /// `http://127.0.0.1:PORT`; OpenAI-style clients use `base_url() + "/v1"`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, model: &str, reply: Reply) {
        lock(&self.inner)
            .scripts
            .entry(model.to_string())
            .or_default()
            .push_back(reply);
    }

    pub fn set_models(&self, ids: &[&str]) {
        lock(&self.inner).models = ids.iter().map(|s| s.to_string()).collect();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    pub fn requests_for(&self, model: &str) -> Vec<Recorded> {
        lock(&self.inner)
            .requests
            .iter()
            .filter(|r| r.model.as_deref() == Some(model))
            .cloned()
            .collect()
    }

    pub fn remaining(&self, model: &str) -> usize {
        lock(&self.inner)
            .scripts
            .get(model)
            .map_or(0, VecDeque::len)
    }

    /// Broken tool-call invariants seen in any request: a tool result that answers no
    /// tool call of the preceding assistant turn, or a tool call left unanswered.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.inner).violations.clone()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panicking test thread must not hide the recording from the others.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

fn record(state: &Shared, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> (usize, Recorded) {
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    let rec = Recorded {
        path: uri.path().to_string(),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let mut inner = lock(state);
    inner.requests.push(rec.clone());
    (inner.requests.len(), rec)
}

async fn chat(State(state): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let dialect = if uri.path().ends_with("/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let (n, rec) = record(&state, &uri, &headers, &body);
    let model = rec.model.clone().unwrap_or_default();
    let problems = match dialect {
        Dialect::OpenAi => check_openai(&rec.body),
        Dialect::Anthropic => check_anthropic(&rec.body),
    };
    let reply = {
        let mut inner = lock(&state);
        inner.violations.extend(
            problems
                .into_iter()
                .map(|p| format!("request #{n} ({} {model}): {p}", rec.path)),
        );
        inner.scripts.get_mut(&model).and_then(VecDeque::pop_front)
    };
    let Some(reply) = reply else {
        let message = format!("script exhausted for model {model}");
        // A request nobody scripted is a scenario that went further than its author meant.
        lock(&state)
            .violations
            .push(format!("request #{n} ({} {model}): {message}", rec.path));
        let body = match dialect {
            Dialect::OpenAi => {
                json!({"error": {"type": "server_error", "code": "script_exhausted", "message": message}})
            }
            Dialect::Anthropic => {
                json!({"type": "error", "error": {"type": "api_error", "message": message}})
            }
        };
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    };
    render(&state, dialect, n, &model, reply).await
}

async fn render(state: &Shared, dialect: Dialect, n: usize, model: &str, r: Reply) -> Response {
    if let Some(d) = r.delay {
        tokio::time::sleep(d).await;
    }
    if let Kind::CutOff(inner) = r.kind.clone() {
        let whole = Reply {
            kind: *inner,
            ..r.clone()
        };
        let full = axum::body::to_bytes(
            Box::pin(render(state, dialect, n, model, whole))
                .await
                .into_body(),
            usize::MAX,
        )
        .await
        .expect("a scripted body");
        let half = full.slice(..full.len() / 2);
        let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut off",
            )),
        ];
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
            .expect("valid scripted response");
    }
    let (code, body): (u16, String) = match r.kind.clone() {
        Kind::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Kind::CutOff(_) => unreachable!("handled above"),
        Kind::Malformed => (200, r#"{"id": "broken", "choices": [ {"#.to_string()),
        Kind::Raw { code, body } => (code, body),
        Kind::Status { code, body } => (code, body.to_string()),
        Kind::Text(text) => (200, success(dialect, n, model, Some(text), Vec::new(), &r)),
        Kind::Tools(calls) => {
            let calls = {
                let mut inner = lock(state);
                calls
                    .iter()
                    .map(|(name, args)| {
                        inner.tool_ids += 1;
                        (inner.tool_ids, name.clone(), args.clone())
                    })
                    .collect()
            };
            let text = r.lead_text.clone();
            (200, success(dialect, n, model, text, calls, &r))
        }
    };
    let mut resp = Response::builder()
        .status(code)
        .header("content-type", "application/json");
    if let Some(secs) = r.retry_after {
        resp = resp.header("retry-after", secs.to_string());
    }
    for (k, v) in &r.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp.body(axum::body::Body::from(body))
        .expect("valid scripted response")
}

fn success(
    dialect: Dialect,
    n: usize,
    model: &str,
    text: Option<String>,
    calls: Vec<(u64, String, Value)>,
    r: &Reply,
) -> String {
    let body = match dialect {
        Dialect::OpenAi => {
            let mut message = json!({"role": "assistant", "content": text, "refusal": null});
            if !calls.is_empty() {
                message["tool_calls"] = calls
                    .iter()
                    .map(|(id, name, args)| {
                        json!({
                            "id": format!("call_{id}"),
                            "type": "function",
                            "function": {"name": name, "arguments": args.to_string()},
                        })
                    })
                    .collect();
            }
            let finish = match (r.truncated, calls.is_empty()) {
                (true, _) => "length",
                (false, true) => "stop",
                (false, false) => "tool_calls",
            };
            json!({
                "id": format!("chatcmpl-{n}"),
                "object": "chat.completion",
                "created": 1_700_000_000u64,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": r.input,
                    "completion_tokens": r.output,
                    "total_tokens": r.input + r.output,
                    "prompt_tokens_details": {"cached_tokens": r.cached},
                },
            })
        }
        Dialect::Anthropic => {
            let mut content: Vec<Value> = text
                .map(|t| json!({"type": "text", "text": t}))
                .into_iter()
                .collect();
            for (id, name, args) in &calls {
                content.push(json!({
                    "type": "tool_use",
                    "id": format!("toolu_{id}"),
                    "name": name,
                    "input": args,
                }));
            }
            let stop = match (r.truncated, calls.is_empty()) {
                (true, _) => "max_tokens",
                (false, true) => "end_turn",
                (false, false) => "tool_use",
            };
            json!({
                "id": format!("msg_{n}"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": r.input.saturating_sub(r.cached),
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": r.cached,
                    "output_tokens": r.output,
                },
            })
        }
    };
    body.to_string()
}

async fn models(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, &uri, &headers, &Bytes::new());
    let ids = lock(&state).models.clone();
    // One shape both dialects accept: OpenAI reads `data[].id`, Anthropic adds paging fields.
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "scripted",
                "type": "model", "display_name": id, "created_at": "2025-01-01T00:00:00Z",
            })
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "first_id": ids.first(),
        "last_id": ids.last(),
    }))
    .into_response()
}

async fn unknown(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &uri, &headers, &body);
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"error": {"type": "not_found", "message": format!("no route {}", uri.path())}}),
        ),
    )
        .into_response()
}

/// Chat Completions: every `tool` message answers a tool call of the nearest preceding
/// assistant message, and every such call is answered before the next non-tool message.
fn check_openai(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
            if let Some(pos) = pending.iter().position(|p| p == id) {
                pending.remove(pos);
                answered.insert(id.to_string());
            } else if answered.contains(id) {
                problems.push(format!("messages[{i}]: tool call {id:?} answered twice"));
            } else {
                problems.push(format!(
                    "messages[{i}]: tool message answers {id:?}, which no preceding assistant message called"
                ));
            }
            continue;
        }
        for id in pending.drain(..) {
            problems.push(format!(
                "messages[{i}]: tool call {id:?} was not answered before this {role} message"
            ));
        }
        if role == "assistant" {
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                pending = calls
                    .iter()
                    .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect();
            }
        }
    }
    for id in pending {
        problems.push(format!("tool call {id:?} is never answered"));
    }
    problems
}

/// Messages API: the user message after an assistant turn with `tool_use` blocks carries a
/// `tool_result` for each of them, and `tool_result`s answer only that turn's calls.
fn check_anthropic(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let blocks = |m: &Value| -> Vec<Value> {
        m.get("content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let ids_of = |kind: &str, field: &str| -> Vec<String> {
            blocks(m)
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
                .filter_map(|b| b.get(field).and_then(Value::as_str).map(str::to_string))
                .collect()
        };
        match role {
            "user" => {
                let results = ids_of("tool_result", "tool_use_id");
                for id in &results {
                    if !calls.contains(id) {
                        problems.push(format!(
                            "messages[{i}]: tool_result for {id:?}, which the previous assistant message did not call"
                        ));
                    }
                }
                for id in &calls {
                    if !results.contains(id) {
                        problems.push(format!("messages[{i}]: tool_use {id:?} is not answered"));
                    }
                }
                calls.clear();
            }
            _ => {
                for id in calls.drain(..) {
                    problems.push(format!(
                        "messages[{i}]: tool_use {id:?} is not answered before this {role} message"
                    ));
                }
                calls = ids_of("tool_use", "id");
            }
        }
    }
    for id in calls {
        problems.push(format!("tool_use {id:?} is never answered"));
    }
    problems
}
