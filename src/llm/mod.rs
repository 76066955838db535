//! Model providers behind one trait, with usage, prices, token counting and the budget ledger.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod anthropic;
pub mod bpe;
pub mod http;
pub mod openai;
pub mod retry;
pub mod tokens;

/// Which of the two agents a model call is made for (a configuration concept: each role
/// has its model settings).
pub use crate::config::AgentRole;
/// Prices and the ledger live in [`crate::money`], a leaf the store shares.
pub use crate::money::{ledger, pricing, Usage};

/// One message of a conversation, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        content: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// The answer to one tool call.
    Tool {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message::System {
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message::User {
            content: content.into(),
        }
    }
}

/// A tool call the model asked for. `arguments` is the raw JSON text the model produced: it
/// may be malformed, and the tool layer reports that back to the model rather than failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model: name, description and a JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    /// f64 so that a configured 0.1 is sent as 0.1, not 0.10000000149.
    pub temperature: Option<f64>,
    /// Upper bound on output tokens; always sent, since the budget reservation relies on it.
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    Stop,
    /// The model asked for tools.
    ToolCalls,
    /// `max_tokens` cut the answer.
    Length,
    /// The provider refused (content filter, refusal).
    Refusal,
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The model the provider says answered (may carry a dated suffix).
    pub model: String,
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// `None` when the provider reported no usage: the call is then charged at its
    /// reservation, never at zero.
    pub usage: Option<Usage>,
    pub stop_reason: StopReason,
}

/// Errors from a provider, classified by HTTP status and the structured error body —
/// never by matching message text.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    #[error("rate limited by the provider ({message})")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// A 429 that waiting will not fix: the account is out of credit or over its spend limit.
    #[error("the provider account is out of quota ({message})")]
    QuotaExceeded { message: String },
    #[error("the provider is overloaded ({message})")]
    Overloaded {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("provider server error {status} ({message})")]
    Server {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("the provider rejected the credentials ({status}: {message})")]
    Auth { status: u16, message: String },
    #[error("the prompt is longer than the model's context window ({message})")]
    ContextLengthExceeded { message: String },
    #[error("the provider rejected the request ({status}: {message})")]
    BadRequest { status: u16, message: String },
    #[error("the model call timed out after {0:?}")]
    Timeout(Duration),
    /// The request went out (or may have) and no complete answer came back.
    #[error("the connection to the provider failed: {0}")]
    Connection(String),
    /// No connection could be made: nothing was sent, nothing billed.
    #[error("could not reach the provider at {at} ({message})")]
    Unreachable { at: String, message: String },
    /// A 2xx answer whose body stopped before its end.
    #[error("the provider's answer was cut off ({0})")]
    CutOff(String),
    #[error("the provider's answer could not be understood: {0}")]
    InvalidResponse(String),
}

impl ProviderError {
    /// Whether trying the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Overloaded { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout(_)
                | ProviderError::Connection(_)
                | ProviderError::Unreachable { .. }
                | ProviderError::CutOff(_)
        )
    }

    /// The server's own `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Overloaded { retry_after, .. }
            | ProviderError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A model provider. `chat` makes exactly one attempt; retries live in [`retry::Retrying`].
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name for logs and errors ("openai", "anthropic").
    fn name(&self) -> &str;
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError>;
    /// The model ids the provider's models endpoint lists.
    async fn list_models(&self) -> Result<Vec<String>, ProviderError>;
}
