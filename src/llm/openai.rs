//! OpenAI-compatible Chat Completions client. One dialect serves OpenAI itself and everything
//! that imitates it (LiteLLM proxy, Ollama, vLLM, OpenRouter, Azure): only the base URL and
//! the headers differ.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, ClientBuildError};
use super::{
    ChatRequest, ChatResponse, Message, Provider, ProviderError, StopReason, ToolCall, Usage,
};

/// Which request field carries the output-token cap. OpenAI's reasoning models reject
/// `max_tokens` and want `max_completion_tokens`; most compatible servers only know the former.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

/// A client for `POST {base}/chat/completions` and `GET {base}/models`.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base_url: String,
    headers: HeaderMap,
    api_key: Option<String>,
    timeout: Duration,
    name: String,
    max_tokens_field: MaxTokensField,
}

impl OpenAiClient {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";

    /// `base_url` includes the version segment (`https://api.openai.com/v1`,
    /// `http://localhost:11434/v1`). `api_key` is sent as a bearer token when present
    /// (Ollama needs none; Azure takes its key as an `api-key` extra header instead).
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
        let auth = api_key
            .as_ref()
            .map(|k| ("authorization", format!("Bearer {k}")));
        Ok(OpenAiClient {
            headers: http::header_map(&extra_headers, auth)?,
            http,
            base_url: base_url.into(),
            api_key,
            timeout,
            name: "openai".to_string(),
            max_tokens_field: MaxTokensField::default(),
        })
    }

    /// Names the provider in logs and errors ("litellm", "ollama"); default "openai".
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn with_max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }

    /// The JSON body sent for `req`.
    pub fn request_body(&self, req: &ChatRequest) -> Value {
        let messages: Vec<Value> = req.messages.iter().map(message_json).collect();
        let mut body = json!({
            "model": req.model,
            "messages": messages,
        });
        let cap = match self.max_tokens_field {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        };
        body[cap] = json!(req.max_tokens);
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        }
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

fn message_json(m: &Message) -> Value {
    match m {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Assistant {
            content,
            tool_calls,
        } => {
            // `content` may be null only when there are tool calls.
            let content = match content {
                None if tool_calls.is_empty() => Some(""),
                other => other.as_deref(),
            };
            let mut v = json!({"role": "assistant", "content": content});
            // Some compatible servers reject an empty `tool_calls` array.
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
            }
            v
        }
        // Chat Completions has no error flag for tool results; the content says it.
        Message::Tool {
            call_id, content, ..
        } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<MessageBody>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct MessageBody {
    /// A string per the spec; some compatible servers send an array of text parts.
    #[serde(default)]
    content: Value,
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallBody>>,
}

#[derive(Deserialize)]
struct ToolCallBody {
    id: Option<String>,
    function: FunctionBody,
}

#[derive(Deserialize)]
struct FunctionBody {
    name: String,
    /// A JSON string per the spec; some compatible servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

/// Turns a Chat Completions body into a [`ChatResponse`]; `fallback_model` names the model
/// when the server leaves it out.
pub fn parse_response(body: &str, fallback_model: &str) -> Result<ChatResponse, ProviderError> {
    let parsed: CompletionBody = http::parse_json(body, "chat completion")?;
    let choice =
        parsed.choices.into_iter().next().ok_or_else(|| {
            ProviderError::InvalidResponse("chat completion has no choices".into())
        })?;
    let message = choice.message.ok_or_else(|| {
        ProviderError::InvalidResponse("chat completion choice has no message".into())
    })?;
    let tool_calls: Vec<ToolCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            // Ollama has omitted ids; a positional one still lets the answer be matched.
            id: c.id.unwrap_or_else(|| format!("call_{i}")),
            name: c.function.name,
            arguments: match c.function.arguments {
                Value::String(s) => s,
                Value::Null => "{}".to_string(),
                other => other.to_string(),
            },
        })
        .collect();
    let refused = message.refusal.as_deref().is_some_and(|r| !r.is_empty());
    let mut stop_reason = match choice.finish_reason.as_deref() {
        Some("stop") => StopReason::Stop,
        Some("tool_calls") | Some("function_call") => StopReason::ToolCalls,
        Some("length") => StopReason::Length,
        Some("content_filter") => StopReason::Refusal,
        _ => StopReason::Other,
    };
    // Some servers (Ollama) say "stop" while returning tool calls; the calls are what matter.
    if !tool_calls.is_empty() && stop_reason == StopReason::Stop {
        stop_reason = StopReason::ToolCalls;
    }
    if refused {
        stop_reason = StopReason::Refusal;
    }
    let content = content_text(&message.content)
        .filter(|c| !c.is_empty())
        .or(if refused { message.refusal } else { None });
    let usage = parsed.usage.map(|u| Usage {
        input_tokens: u.prompt_tokens,
        cached_input_tokens: u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        cache_write_tokens: 0,
        output_tokens: u.completion_tokens,
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
impl Provider for OpenAiClient {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let url = http::join_url(&self.base_url, "chat/completions");
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
                provider = %self.name,
                model = %r.model,
                input_tokens = r.usage.map(|u| u.input_tokens),
                output_tokens = r.usage.map(|u| u.output_tokens),
                "model call answered"
            ),
            Err(e) => {
                tracing::debug!(provider = %self.name, model = %req.model, error = %e, "model call failed")
            }
        }
        result
    }

    async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        let url = http::join_url(&self.base_url, "models");
        let builder = self.http.get(url).headers(self.headers.clone());
        let ok = http::send(builder, self.timeout, self.secret()).await?;
        let list: List = http::parse_json(&ok.body, "model list")?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }
}
