//! The provider clients against a real HTTP server: recorded provider answers, error
//! classification, retries and the request bodies each dialect is sent.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use equitr_coder::llm::anthropic::AnthropicClient;
use equitr_coder::llm::openai::{MaxTokensField, OpenAiClient};
use equitr_coder::llm::retry::{RetryPolicy, Retrying, SleepFn};
use equitr_coder::llm::{
    ChatRequest, Message, Provider, ProviderError, StopReason, ToolCall, ToolSpec, Usage,
};
use serde_json::{json, Value};
use support::llm_server::{Reply, ScriptedLlm};

const KEY: &str = "sk-test-secret-key-0123";

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/llm/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}

fn openai_with(s: &ScriptedLlm, timeout: Duration) -> OpenAiClient {
    OpenAiClient::new(
        reqwest::Client::new(),
        format!("{}/v1", s.base_url()),
        Some(KEY.to_string()),
        vec![("x-org".to_string(), "acme".to_string())],
        timeout,
    )
    .unwrap()
}

fn openai(s: &ScriptedLlm) -> OpenAiClient {
    openai_with(s, Duration::from_secs(10))
}

fn anthropic_with(s: &ScriptedLlm, timeout: Duration) -> AnthropicClient {
    AnthropicClient::new(
        reqwest::Client::new(),
        s.base_url(),
        Some(KEY.to_string()),
        Vec::new(),
        timeout,
    )
    .unwrap()
}

fn anthropic(s: &ScriptedLlm) -> AnthropicClient {
    anthropic_with(s, Duration::from_secs(10))
}

fn req(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_string(),
        messages: vec![Message::user("hi")],
        tools: Vec::new(),
        temperature: None,
        max_tokens: 256,
    }
}

/// Retries with the waits recorded instead of slept, so tests assert the waits exactly.
fn retrying<P: Provider>(p: P) -> (Retrying<P>, Arc<Mutex<Vec<Duration>>>) {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let w = waits.clone();
    let sleep: SleepFn = Arc::new(move |d| {
        w.lock().unwrap().push(d);
        Box::pin(async {})
    });
    let policy = RetryPolicy {
        max_retries: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(60),
    };
    (Retrying::new(p, policy).with_sleep(sleep), waits)
}

fn waits(w: &Arc<Mutex<Vec<Duration>>>) -> Vec<Duration> {
    w.lock().unwrap().clone()
}

/// Serves a recorded error (`{status_code, headers, body}`) with its real headers.
fn recorded_error(path: &str) -> Reply {
    let rec = fixture_json(path);
    let status = rec["status_code"].as_u64().unwrap() as u16;
    let mut reply = Reply::raw(status, rec["body"].to_string());
    for (k, v) in rec["headers"].as_object().unwrap() {
        if !["content-length", "connection", "content-type"].contains(&k.as_str()) {
            reply = reply.header(k, v.as_str().unwrap());
        }
    }
    reply
}

// ---------------------------------------------------------------- recorded answers

#[tokio::test]
async fn openai_parses_recorded_single_tool_call() {
    let s = ScriptedLlm::start().await;
    s.push(
        "gpt-4o",
        Reply::raw(
            200,
            fixture("openai/chat.completions.test_parse_pydantic_tool.json"),
        ),
    );
    let r = openai(&s).chat(&req("gpt-4o")).await.unwrap();
    assert_eq!(r.model, "gpt-4o-2024-08-06");
    assert_eq!(r.content, None);
    assert_eq!(r.stop_reason, StopReason::ToolCalls);
    assert_eq!(
        r.tool_calls,
        vec![ToolCall {
            id: "call_Y6qJ7ofLgOrBnMD5WbVAeiRV".into(),
            name: "GetWeatherArgs".into(),
            arguments: r#"{"city":"Edinburgh","country":"UK","units":"c"}"#.into(),
        }]
    );
    assert_eq!(
        r.usage.unwrap(),
        Usage {
            input_tokens: 76,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 24
        }
    );
}

#[tokio::test]
async fn openai_parses_recorded_parallel_tool_calls() {
    let s = ScriptedLlm::start().await;
    s.push(
        "gpt-4o",
        Reply::raw(
            200,
            fixture("openai/chat.completions.test_parse_multiple_pydantic_tools.json"),
        ),
    );
    let r = openai(&s).chat(&req("gpt-4o")).await.unwrap();
    assert_eq!(r.stop_reason, StopReason::ToolCalls);
    let got: Vec<(&str, &str)> = r
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("call_fdNz3vOBKYgOIpMdWotB9MjY", "GetWeatherArgs"),
            ("call_h1DWI1POMJLb0KwIyQHWXD4p", "get_stock_price"),
        ]
    );
    // Arguments stay the model's raw text, byte for byte.
    assert_eq!(
        r.tool_calls[1].arguments,
        r#"{"ticker": "AAPL", "exchange": "NASDAQ"}"#
    );
    assert_eq!(r.usage.unwrap().input_tokens, 149);
    assert_eq!(r.usage.unwrap().output_tokens, 60);
}

#[tokio::test]
async fn openai_parses_recorded_text_answer() {
    let s = ScriptedLlm::start().await;
    s.push(
        "gpt-4o",
        Reply::raw(
            200,
            fixture("openai/chat.completions.test_parse_nothing.json"),
        ),
    );
    let r = openai(&s).chat(&req("gpt-4o")).await.unwrap();
    assert_eq!(r.stop_reason, StopReason::Stop);
    assert!(r.tool_calls.is_empty());
    assert!(r
        .content
        .unwrap()
        .starts_with("I'm unable to provide real-time weather updates."));
}

#[tokio::test]
async fn anthropic_parses_recorded_tool_use() {
    let s = ScriptedLlm::start().await;
    s.push(
        "claude-haiku-4-5",
        Reply::raw(
            200,
            fixture("anthropic/runner.a8ac789b.resp0.status200.json"),
        ),
    );
    let r = anthropic(&s).chat(&req("claude-haiku-4-5")).await.unwrap();
    assert_eq!(r.model, "claude-haiku-4-5-20251001");
    assert_eq!(r.stop_reason, StopReason::ToolCalls);
    assert_eq!(r.content, None);
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].id, "toolu_013DU6hV4C1M8dJ32ybQFAFi");
    assert_eq!(r.tool_calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&r.tool_calls[0].arguments).unwrap();
    assert_eq!(args, json!({"location": "SF", "units": "c"}));
    assert_eq!(
        r.usage.unwrap(),
        Usage {
            input_tokens: 597,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            output_tokens: 71
        }
    );
}

#[tokio::test]
async fn anthropic_parses_recorded_text_and_tool_use() {
    let s = ScriptedLlm::start().await;
    s.push(
        "claude-sonnet-4-5",
        Reply::raw(
            200,
            fixture("anthropic/runner.956fa2fe.resp0.status200.json"),
        ),
    );
    let r = anthropic(&s).chat(&req("claude-sonnet-4-5")).await.unwrap();
    assert!(r
        .content
        .as_deref()
        .unwrap()
        .starts_with("# The Wonderful World of Companion Animals"));
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].name, "submit_analysis");
    assert_eq!(r.usage.unwrap().input_tokens, 617);
    assert_eq!(r.usage.unwrap().output_tokens, 995);
}

/// Replays the recorded tool round trip: the second request we build from the first answer
/// must equal what the official SDK sent (minus the SDK-only `caller` field).
#[tokio::test]
async fn anthropic_tool_result_request_matches_recorded_sdk_request() {
    let pairs = fixture_json("anthropic/runner.a8ac789b.pairs.json");
    let s = ScriptedLlm::start().await;
    s.push(
        "claude-haiku-4-5",
        Reply::raw(200, pairs[0]["response"]["body"].to_string()),
    );
    s.push(
        "claude-haiku-4-5",
        Reply::raw(
            200,
            fixture("anthropic/runner.a8ac789b.resp1.status200.json"),
        ),
    );
    let client = anthropic(&s);
    let first_sent = &pairs[0]["request"]["body"];
    let tool = &first_sent["tools"][0];
    let mut r = ChatRequest {
        model: "claude-haiku-4-5".into(),
        messages: vec![Message::user("What's the weather in SF in Celsius?")],
        tools: vec![ToolSpec {
            name: tool["name"].as_str().unwrap().into(),
            description: tool["description"].as_str().unwrap().into(),
            parameters: tool["input_schema"].clone(),
        }],
        temperature: None,
        max_tokens: 1024,
    };
    let a = client.chat(&r).await.unwrap();
    r.messages.push(Message::Assistant {
        content: a.content.clone(),
        tool_calls: a.tool_calls.clone(),
    });
    r.messages.push(Message::Tool {
        call_id: a.tool_calls[0].id.clone(),
        content: r#"{"location": "SF", "temperature": "20\u00b0C", "condition": "Sunny"}"#.into(),
        is_error: false,
    });
    let b = client.chat(&r).await.unwrap();
    assert_eq!(b.stop_reason, StopReason::Stop);
    assert!(b.content.unwrap().contains("20°C"));

    let sent = s.requests();
    assert_eq!(&sent[0].body, first_sent);
    let mut expected = pairs[1]["request"]["body"].clone();
    expected["messages"][1]["content"][0]
        .as_object_mut()
        .unwrap()
        .remove("caller");
    assert_eq!(sent[1].body, expected);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

#[tokio::test]
async fn anthropic_recorded_error_bodies_are_classified() {
    let s = ScriptedLlm::start().await;
    let m = "claude-sonnet-4-5";
    s.push(
        m,
        recorded_error("anthropic/anthropic.400.invalid_request_error.recorded.json"),
    );
    s.push(
        m,
        recorded_error("anthropic/anthropic.429.rate_limit_error.recorded.json"),
    );
    s.push(
        m,
        Reply::raw(
            529,
            fixture("anthropic/anthropic.529.overloaded_error.sdk-fixture.json"),
        ),
    );
    let c = anthropic(&s);

    let e = c.chat(&req(m)).await.unwrap_err();
    let ProviderError::BadRequest {
        status: 400,
        message,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert!(message.starts_with("invalid_request_error: messages.0.content.1"));
    assert!(!e.is_retryable());

    let e = c.chat(&req(m)).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::RateLimited { retry_after: None, message } if message.starts_with("rate_limit_error:")),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let e = c.chat(&req(m)).await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::Overloaded {
            retry_after: None,
            message: "overloaded_error: Overloaded".into()
        }
    );
}

/// OpenAI error bodies shaped by the spec's `ErrorResponse` schema (the fixture); the
/// values are the codes OpenAI documents, since no recorded OpenAI error body is available.
#[tokio::test]
async fn openai_error_response_bodies_are_classified() {
    let schema = fixture_json("openai/ErrorResponse.schema.json");
    let required: Vec<&str> = schema["Error"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let body = |kind: &str, code: Option<&str>, message: &str| {
        let b = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
        for field in &required {
            assert!(b["error"].get(field).is_some(), "schema requires {field}");
        }
        b
    };
    let s = ScriptedLlm::start().await;
    let m = "gpt-4o";
    s.push(
        m,
        Reply::status(
            429,
            body(
                "insufficient_quota",
                Some("insufficient_quota"),
                "You exceeded your current quota, please check your plan and billing details.",
            ),
        ),
    );
    s.push(
        m,
        Reply::status(
            429,
            body(
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests",
            ),
        )
        .retry_after(2),
    );
    s.push(
        m,
        Reply::status(
            400,
            body(
                "invalid_request_error",
                Some("context_length_exceeded"),
                "This model's maximum context length is 8192 tokens.",
            ),
        ),
    );
    s.push(
        m,
        Reply::status(
            401,
            body(
                "invalid_request_error",
                Some("invalid_api_key"),
                &format!("Incorrect API key provided: {KEY}."),
            ),
        ),
    );
    s.push(
        m,
        Reply::status(
            404,
            body(
                "invalid_request_error",
                Some("model_not_found"),
                "The model `gpt-9` does not exist",
            ),
        ),
    );
    s.push(
        m,
        Reply::status(
            503,
            body(
                "server_error",
                None,
                "The server is overloaded or not ready yet.",
            ),
        ),
    );
    let c = openai(&s);
    let mut errs = Vec::new();
    for _ in 0..6 {
        errs.push(c.chat(&req(m)).await.unwrap_err());
    }
    assert!(
        matches!(errs[0], ProviderError::QuotaExceeded { .. }),
        "{:?}",
        errs[0]
    );
    assert_eq!(errs[1].retry_after(), Some(Duration::from_secs(2)));
    assert!(matches!(errs[1], ProviderError::RateLimited { .. }));
    assert!(
        matches!(errs[2], ProviderError::ContextLengthExceeded { .. }),
        "{:?}",
        errs[2]
    );
    assert!(matches!(errs[3], ProviderError::Auth { status: 401, .. }));
    assert!(matches!(
        errs[4],
        ProviderError::BadRequest { status: 404, .. }
    ));
    assert!(matches!(errs[5], ProviderError::Server { status: 503, .. }));
    for e in &errs {
        let text = e.to_string();
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(!text.contains('\n'), "multi-line: {text}");
    }
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn rate_limit_with_retry_after_then_success() {
    let s = ScriptedLlm::start().await;
    let body = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}});
    s.push("claude", Reply::status(429, body).retry_after(3));
    s.push("claude", Reply::text("done"));
    let (p, w) = retrying(anthropic(&s));
    let r = p.chat(&req("claude")).await.unwrap();
    assert_eq!(r.content.as_deref(), Some("done"));
    assert_eq!(s.requests().len(), 2);
    assert_eq!(waits(&w), vec![Duration::from_secs(3)]);
}

/// The default sleeper really waits: a tiny `retry-after-ms` gives a lower bound only.
#[tokio::test]
async fn retry_after_ms_is_really_slept() {
    let s = ScriptedLlm::start().await;
    let body =
        json!({"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}});
    s.push("m", Reply::status(429, body).header("retry-after-ms", "80"));
    s.push("m", Reply::text("ok"));
    let p = Retrying::new(openai(&s), RetryPolicy::default());
    let start = Instant::now();
    p.chat(&req("m")).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(80));
    assert_eq!(s.requests().len(), 2);
}

#[tokio::test]
async fn server_error_then_success() {
    let s = ScriptedLlm::start().await;
    s.push(
        "m",
        Reply::status(
            500,
            json!({"error": {"type": "server_error", "message": "boom"}}),
        ),
    );
    s.push("m", Reply::text("ok"));
    let (p, w) = retrying(openai(&s));
    assert_eq!(
        p.chat(&req("m")).await.unwrap().content.as_deref(),
        Some("ok")
    );
    assert_eq!(s.requests().len(), 2);
    let w = waits(&w);
    assert_eq!(w.len(), 1);
    assert!(
        w[0] <= Duration::from_millis(10),
        "first backoff within base: {w:?}"
    );
}

#[tokio::test]
async fn overloaded_529_then_success() {
    let s = ScriptedLlm::start().await;
    s.push(
        "claude",
        Reply::raw(
            529,
            fixture("anthropic/anthropic.529.overloaded_error.sdk-fixture.json"),
        ),
    );
    s.push("claude", Reply::text("ok"));
    let (p, _) = retrying(anthropic(&s));
    assert_eq!(
        p.chat(&req("claude")).await.unwrap().content.as_deref(),
        Some("ok")
    );
    assert_eq!(s.requests().len(), 2);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let cases = [
        (
            401,
            json!({"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "bad key"}}),
        ),
        (
            400,
            json!({"error": {"type": "invalid_request_error", "code": null, "message": "bad"}}),
        ),
        (
            429,
            json!({"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "no money"}}),
        ),
    ];
    for (status, body) in cases {
        let s = ScriptedLlm::start().await;
        s.push("m", Reply::status(status, body));
        s.push("m", Reply::text("never served"));
        let (p, w) = retrying(openai(&s));
        let e = p.chat(&req("m")).await.unwrap_err();
        assert!(!e.is_retryable(), "{status}: {e:?}");
        assert_eq!(s.requests().len(), 1, "{status}");
        assert!(waits(&w).is_empty());
        assert_eq!(s.remaining("m"), 1);
    }
}

#[tokio::test]
async fn anthropic_billing_error_is_quota() {
    let s = ScriptedLlm::start().await;
    s.push("claude", Reply::status(400, json!({"type": "error", "error": {"type": "billing_error", "message": "credit balance too low"}})));
    let e = anthropic(&s).chat(&req("claude")).await.unwrap_err();
    assert!(matches!(e, ProviderError::QuotaExceeded { .. }), "{e:?}");
}

#[tokio::test]
async fn huge_retry_after_gives_up_at_once() {
    let s = ScriptedLlm::start().await;
    s.push(
        "m",
        Reply::status(
            429,
            json!({"error": {"type": "requests", "message": "daily limit"}}),
        )
        .retry_after(3600),
    );
    s.push("m", Reply::text("never served"));
    let (p, w) = retrying(openai(&s));
    let e = p.chat(&req("m")).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(s.requests().len(), 1);
    assert!(waits(&w).is_empty());
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let s = ScriptedLlm::start().await;
    for _ in 0..6 {
        s.push(
            "m",
            Reply::status(
                502,
                json!({"error": {"type": "server_error", "message": "bad gateway"}}),
            ),
        );
    }
    let (p, w) = retrying(openai(&s));
    let e = p.chat(&req("m")).await.unwrap_err();
    assert!(matches!(e, ProviderError::Server { status: 502, .. }));
    assert_eq!(s.requests().len(), 5);
    assert_eq!(waits(&w).len(), 4);
}

#[tokio::test]
async fn hang_times_out_and_is_retried() {
    let s = ScriptedLlm::start().await;
    s.push("m", Reply::hang());
    let e = openai_with(&s, Duration::from_millis(200))
        .chat(&req("m"))
        .await
        .unwrap_err();
    assert_eq!(e, ProviderError::Timeout(Duration::from_millis(200)));
    assert!(e.is_retryable());

    s.push("claude", Reply::hang());
    s.push("claude", Reply::text("second try"));
    let (p, _) = retrying(anthropic_with(&s, Duration::from_millis(200)));
    let r = p.chat(&req("claude")).await.unwrap();
    assert_eq!(r.content.as_deref(), Some("second try"));
    assert_eq!(s.requests_for("claude").len(), 2);
}

#[tokio::test]
async fn json_cut_off_is_retried_and_wrong_json_is_invalid_in_both_dialects() {
    let s = ScriptedLlm::start().await;
    // A 200 whose JSON stops half-way was cut off in transit: retried.
    s.push("m", Reply::malformed());
    s.push("m", Reply::text("whole"));
    let (p, _) = retrying(openai(&s));
    assert_eq!(
        p.chat(&req("m")).await.unwrap().content.as_deref(),
        Some("whole")
    );
    assert_eq!(s.requests().len(), 2);
    s.push("m", Reply::malformed());
    let e = anthropic(&s).chat(&req("m")).await.unwrap_err();
    assert!(matches!(e, ProviderError::CutOff(_)), "{e:?}");
    assert!(e.is_retryable());
    // Complete JSON of the wrong shape will not improve by asking again.
    s.push("m", Reply::raw(200, r#"{"choices": []}"#));
    s.push("m", Reply::raw(200, r#"{"choices": []}"#));
    let (p, _) = retrying(openai(&s));
    let e = p.chat(&req("m")).await.unwrap_err();
    assert!(matches!(e, ProviderError::InvalidResponse(_)), "{e:?}");
    assert_eq!(s.requests().len(), 4, "not retried");
}

#[tokio::test]
async fn connection_refused_is_unreachable_and_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = OpenAiClient::new(
        reqwest::Client::new(),
        format!("http://127.0.0.1:{port}/v1?api-version=secret"),
        Some(KEY.into()),
        Vec::new(),
        Duration::from_secs(5),
    )
    .unwrap();
    let e = c.chat(&req("m")).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Unreachable { at, .. } if *at == format!("http://127.0.0.1:{port}")),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "could not reach the provider at http://127.0.0.1:{port} ("
        )),
        "{e}"
    );
    assert!(
        !e.to_string().contains('\n') && !e.to_string().contains("secret"),
        "{e}"
    );
    assert!(e.is_retryable());
    let a = AnthropicClient::new(
        reqwest::Client::new(),
        format!("http://127.0.0.1:{port}"),
        Some(KEY.into()),
        Vec::new(),
        Duration::from_secs(5),
    )
    .unwrap();
    let e = a.list_models().await.unwrap_err();
    assert!(matches!(e, ProviderError::Unreachable { .. }), "{e:?}");
}

#[tokio::test]
async fn exhausted_script_fails_loudly() {
    let s = ScriptedLlm::start().await;
    let e = openai(&s)
        .chat(&req("nobody-scripted-me"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Server { status: 500, message, .. } if message.contains("script exhausted for model nobody-scripted-me")),
        "{e:?}"
    );
    assert_eq!(s.requests_for("nobody-scripted-me").len(), 1);
}

// ---------------------------------------------------------------- request shapes

fn conversation(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![
            Message::system("You are terse."),
            Message::user("Read two files."),
            Message::Assistant {
                content: Some("Reading.".into()),
                tool_calls: vec![
                    ToolCall {
                        id: "c1".into(),
                        name: "read_file".into(),
                        arguments: r#"{"path":"a.rs"}"#.into(),
                    },
                    ToolCall {
                        id: "c2".into(),
                        name: "read_file".into(),
                        arguments: "{not json".into(),
                    },
                ],
            },
            Message::Tool {
                call_id: "c1".into(),
                content: "fn a() {}".into(),
                is_error: false,
            },
            Message::Tool {
                call_id: "c2".into(),
                content: "bad arguments".into(),
                is_error: true,
            },
            Message::user("Now summarise."),
        ],
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        }],
        temperature: Some(0.5),
        max_tokens: 1000,
    }
}

#[tokio::test]
async fn openai_request_shape() {
    let s = ScriptedLlm::start().await;
    s.push("gpt-x", Reply::text("ok"));
    openai(&s).chat(&conversation("gpt-x")).await.unwrap();
    let sent = s.requests().remove(0);
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(sent.header("x-org"), Some("acme"));
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-x",
            "max_tokens": 1000,
            "temperature": 0.5,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Read two files."},
                {"role": "assistant", "content": "Reading.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": "{not json"}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "fn a() {}"},
                {"role": "tool", "tool_call_id": "c2", "content": "bad arguments"},
                {"role": "user", "content": "Now summarise."},
            ],
            "tools": [{"type": "function", "function": {
                "name": "read_file", "description": "Read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            }}],
        })
    );
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

#[tokio::test]
async fn openai_without_key_sends_no_authorization_and_can_use_max_completion_tokens() {
    let s = ScriptedLlm::start().await;
    s.push("llama3", Reply::text("ok"));
    let c = OpenAiClient::new(
        reqwest::Client::new(),
        format!("{}/v1/", s.base_url()),
        None,
        Vec::new(),
        Duration::from_secs(5),
    )
    .unwrap()
    .with_name("ollama")
    .with_max_tokens_field(MaxTokensField::MaxCompletionTokens);
    assert_eq!(c.name(), "ollama");
    c.chat(&req("llama3")).await.unwrap();
    let sent = s.requests().remove(0);
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["max_completion_tokens"], json!(256));
    assert!(sent.body.get("max_tokens").is_none());
    assert!(sent.body.get("temperature").is_none());
    assert!(sent.body.get("tools").is_none());
}

#[tokio::test]
async fn anthropic_request_shape() {
    let s = ScriptedLlm::start().await;
    s.push("claude-x", Reply::text("ok"));
    let mut r = conversation("claude-x");
    r.messages.insert(1, Message::system("Never guess."));
    anthropic(&s).chat(&r).await.unwrap();
    let sent = s.requests().remove(0);
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-x",
            "max_tokens": 1000,
            "temperature": 0.5,
            "system": "You are terse.\n\nNever guess.",
            "messages": [
                {"role": "user", "content": "Read two files."},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "c1", "name": "read_file", "input": {"path": "a.rs"}},
                    {"type": "tool_use", "id": "c2", "name": "read_file", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "fn a() {}"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "bad arguments", "is_error": true},
                    {"type": "text", "text": "Now summarise."},
                ]},
            ],
            "tools": [{
                "name": "read_file", "description": "Read a file",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            }],
        })
    );
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

// ---------------------------------------------------------------- scripted server itself

#[tokio::test]
async fn scripted_usage_and_tool_ids_render_in_both_dialects() {
    let s = ScriptedLlm::start().await;
    let usage = Usage {
        input_tokens: 1000,
        cached_input_tokens: 800,
        cache_write_tokens: 0,
        output_tokens: 50,
    };
    s.push(
        "o",
        Reply::tools(vec![("a", json!({"x": 1})), ("b", json!({}))]).usage(1000, 800, 50),
    );
    s.push("c", Reply::tool("a", json!({"x": 1})).usage(1000, 800, 50));
    let o = openai(&s).chat(&req("o")).await.unwrap();
    let c = anthropic(&s).chat(&req("c")).await.unwrap();
    assert_eq!(o.usage, Some(usage));
    assert_eq!(c.usage, Some(usage));
    assert_eq!(
        o.tool_calls
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["call_1", "call_2"]
    );
    assert_eq!(c.tool_calls[0].id, "toolu_3");
    assert_eq!(c.tool_calls[0].arguments, r#"{"x":1}"#);
    assert_eq!(o.stop_reason, StopReason::ToolCalls);
    assert_eq!(c.stop_reason, StopReason::ToolCalls);
    assert_eq!(s.remaining("o"), 0);
}

#[tokio::test]
async fn list_models_in_both_dialects() {
    let s = ScriptedLlm::start().await;
    s.set_models(&["gpt-4o-mini", "claude-sonnet-4-5"]);
    assert_eq!(
        openai(&s).list_models().await.unwrap(),
        ["gpt-4o-mini", "claude-sonnet-4-5"]
    );
    assert_eq!(
        anthropic(&s).list_models().await.unwrap(),
        ["gpt-4o-mini", "claude-sonnet-4-5"]
    );
    let paths: Vec<String> = s.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/models", "/v1/models"]);
}

#[tokio::test]
async fn violations_catch_unanswered_and_orphan_tool_results() {
    let s = ScriptedLlm::start().await;
    s.push("o", Reply::text("ok"));
    s.push("c", Reply::text("ok"));
    let mut r = req("o");
    r.messages = vec![
        Message::user("go"),
        Message::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "t".into(),
                arguments: "{}".into(),
            }],
        },
        Message::Tool {
            call_id: "zzz".into(),
            content: "orphan".into(),
            is_error: false,
        },
    ];
    openai(&s).chat(&r).await.unwrap();
    r.model = "c".into();
    anthropic(&s).chat(&r).await.unwrap();
    let v = s.violations();
    assert!(
        v.iter()
            .any(|p| p.contains("request #1") && p.contains("\"zzz\"")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|p| p.contains("request #1") && p.contains("\"c1\"")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|p| p.contains("request #2") && p.contains("\"zzz\"")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|p| p.contains("request #2") && p.contains("\"c1\"")),
        "{v:?}"
    );
}

#[tokio::test]
async fn scripted_text_with_tools_and_truncation() {
    let s = ScriptedLlm::start().await;
    for m in ["o", "c"] {
        s.push(
            m,
            Reply::tool("read", json!({"p": "x"})).with_text("Reading first."),
        );
        s.push(m, Reply::text("cut off mid").truncated());
    }
    for p in [&openai(&s) as &dyn Provider, &anthropic(&s)] {
        let m = if p.name() == "openai" { "o" } else { "c" };
        let a = p.chat(&req(m)).await.unwrap();
        assert_eq!(a.content.as_deref(), Some("Reading first."));
        assert_eq!(a.tool_calls.len(), 1);
        assert_eq!(a.stop_reason, StopReason::ToolCalls);
        let b = p.chat(&req(m)).await.unwrap();
        assert_eq!(b.stop_reason, StopReason::Length, "{m}");
    }
}
