//! Anthropic Messages API client (`POST {base}/v1/messages`), non-streaming.
//!
//! The neutral conversation maps onto Anthropic's shape: system messages become the
//! top-level `system`, tool calls become `tool_use` blocks, and tool results become
//! `tool_result` blocks in a user message (consecutive results share one message, as the API
//! requires every answer to a turn's tool calls to sit in the next user message).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, ClientBuildError};
use super::{
    ChatRequest, ChatResponse, Message, Provider, ProviderError, StopReason, ToolCall, Usage,
};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A client for the Anthropic Messages and Models endpoints.
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    http: reqwest::Client,
    base_url: String,
    headers: HeaderMap,
    api_key: Option<String>,
    timeout: Duration,
}

impl AnthropicClient {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";

    /// `base_url` is without the version segment (`https://api.anthropic.com`). `api_key`
    /// goes in `x-api-key`; it is optional only for proxies that add it themselves.
    /// `timeout` bounds each call, body included.
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        api_key: Option<String>,
        extra_headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, ClientBuildError> {
        if let Some(k) = &api_key {
            crate::scrub::register_secret(k);
        }
        for (_, v) in &extra_headers {
            crate::scrub::register_secret(v);
        }
        let mut pairs = vec![(
            "anthropic-version".to_string(),
            ANTHROPIC_VERSION.to_string(),
        )];
        pairs.extend(extra_headers);
        let key = api_key.as_ref().map(|k| ("x-api-key", k.clone()));
        Ok(AnthropicClient {
            headers: http::header_map(&pairs, key)?,
            http,
            base_url: base_url.into(),
            api_key,
            timeout,
        })
    }

    /// The JSON body sent for `req`.
    pub fn request_body(&self, req: &ChatRequest) -> Value {
        let mut system: Vec<&str> = Vec::new();
        let mut turns: Vec<Turn> = Vec::new();
        for m in &req.messages {
            match m {
                Message::System { content } => system.push(content),
                Message::User { content } => push_blocks(
                    &mut turns,
                    "user",
                    vec![json!({"type": "text", "text": content})],
                ),
                Message::Assistant {
                    content,
                    tool_calls,
                } => {
                    let mut blocks = Vec::new();
                    // The API rejects empty text blocks.
                    if let Some(text) = content.as_deref().filter(|t| !t.is_empty()) {
                        blocks.push(json!({"type": "text", "text": text}));
                    }
                    for c in tool_calls {
                        blocks.push(json!({
                            "type": "tool_use",
                            "id": c.id,
                            "name": c.name,
                            "input": tool_input(&c.arguments),
                        }));
                    }
                    push_blocks(&mut turns, "assistant", blocks);
                }
                Message::Tool {
                    call_id,
                    content,
                    is_error,
                } => {
                    let mut block = json!({
                        "type": "tool_result",
                        "tool_use_id": call_id,
                        "content": content,
                    });
                    if *is_error {
                        block["is_error"] = json!(true);
                    }
                    push_blocks(&mut turns, "user", vec![block]);
                }
            }
        }
        let messages: Vec<Value> = turns.into_iter().map(Turn::into_json).collect();
        let mut body = json!({
            "model": req.model,
            "max_tokens": req.max_tokens,
            "messages": messages,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "description": t.description,
                        "input_schema": t.parameters,
                    })
                })
                .collect();
        }
        body
    }

    fn secret(&self) -> Option<&str> {
        self.api_key.as_deref()
    }
}

/// The model's raw argument text as the object `tool_use.input` must be. Malformed or
/// non-object arguments become `{}`: the tool layer has already told the model about them,
/// and the API would reject the whole conversation otherwise.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

impl Turn {
    /// A lone text block is sent as a plain string, the form most examples use.
    fn into_json(self) -> Value {
        if let [only] = self.blocks.as_slice() {
            if only["type"] == "text" {
                return json!({"role": self.role, "content": only["text"]});
            }
        }
        json!({"role": self.role, "content": self.blocks})
    }
}

/// Appends blocks, merging into the previous turn when it has the same role: tool results
/// and a following user note must share one user message.
fn push_blocks(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.blocks.extend(blocks),
        _ => turns.push(Turn { role, blocks }),
    }
}

#[derive(Deserialize)]
struct MessageBody {
    model: Option<String>,
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// thinking, redacted_thinking, server tool blocks: not ours to interpret.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// Turns a Messages API body into a [`ChatResponse`]; `fallback_model` names the model when
/// the server leaves it out.
pub fn parse_response(body: &str, fallback_model: &str) -> Result<ChatResponse, ProviderError> {
    let parsed: MessageBody = http::parse_json(body, "message")?;
    let mut texts: Vec<String> = Vec::new();
    let mut tool_calls = Vec::new();
    for block in parsed.content {
        match block {
            Block::Text { text } => texts.push(text),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: if input.is_null() {
                    "{}".to_string()
                } else {
                    input.to_string()
                },
            }),
            Block::Other => {}
        }
    }
    let content = Some(texts.join("\n")).filter(|t| !t.is_empty());
    let stop_reason = match parsed.stop_reason.as_deref() {
        Some("end_turn") | Some("stop_sequence") => StopReason::Stop,
        Some("tool_use") => StopReason::ToolCalls,
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::Length,
        Some("refusal") => StopReason::Refusal,
        _ => StopReason::Other,
    };
    let usage = parsed.usage.map(|u| {
        let read = u.cache_read_input_tokens.unwrap_or(0);
        let write = u.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: u.input_tokens + read + write,
            cached_input_tokens: read,
            cache_write_tokens: write,
            output_tokens: u.output_tokens,
        }
    });
    Ok(ChatResponse {
        model: parsed.model.unwrap_or_else(|| fallback_model.to_string()),
        content,
        tool_calls,
        usage,
        stop_reason,
    })
}

#[async_trait]
impl Provider for AnthropicClient {
    fn name(&self) -> &str {
        "anthropic"
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let url = http::join_url(&self.base_url, "v1/messages");
        let builder = self
            .http
            .post(url)
            .headers(self.headers.clone())
            .json(&self.request_body(req));
        let result = match http::send(builder, self.timeout, self.secret()).await {
            Ok(ok) => {
                parse_response(&ok.body, &req.model).map_err(|e| http::scrub(e, self.secret()))
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(r) => tracing::debug!(
                provider = %"anthropic",
                model = %r.model,
                input_tokens = r.usage.map(|u| u.input_tokens),
                output_tokens = r.usage.map(|u| u.output_tokens),
                "model call answered"
            ),
            Err(e) => {
                tracing::debug!(provider = %"anthropic", model = %req.model, error = %e, "model call failed")
            }
        }
        result
    }

    /// Follows the list's pagination (`has_more`/`last_id`), capped so a misbehaving
    /// server cannot loop us forever.
    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Item>,
            #[serde(default)]
            has_more: bool,
            last_id: Option<String>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        const MAX_PAGES: usize = 20;
        let url = http::join_url(&self.base_url, "v1/models");
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("limit", "1000".to_string())];
            if let Some(a) = &after {
                query.push(("after_id", a.clone()));
            }
            let builder = self
                .http
                .get(&url)
                .headers(self.headers.clone())
                .query(&query);
            let ok = http::send(builder, self.timeout, self.secret()).await?;
            let page: List = http::parse_json(&ok.body, "model list")?;
            ids.extend(page.data.into_iter().map(|m| m.id));
            match (page.has_more, page.last_id) {
                (true, Some(last)) => after = Some(last),
                _ => break,
            }
        }
        Ok(ids)
    }
}
