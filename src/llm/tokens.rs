//! Counting prompt tokens before a call, so the ledger can reserve the call's maximum cost.
//! The count is meant as an upper bound: OpenAI models are counted with their own encoding,
//! other providers' models with cl100k and a safety margin, since their tokenizers differ.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use super::{ChatRequest, Message};

/// OpenAI's documented per-message framing, and the priming of the reply.
const PER_MESSAGE: u64 = 4;
const PRIMING: u64 = 3;
/// Per tool offered: the function wrapper around name, description and schema.
const PER_TOOL: u64 = 10;
/// Non-OpenAI tokenizers (Claude, Gemini, Mistral, DeepSeek) can yield more tokens than
/// cl100k for the same text; 30 % more covers the differences we have seen.
const FOREIGN_MARGIN_PERCENT: u64 = 130;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Encoding {
    O200k,
    Cl100k,
}

fn encoding_for(model: &str) -> (Encoding, bool) {
    let id = model.rsplit('/').next().unwrap_or(model).to_lowercase();
    let openai_o200k = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
    ];
    if openai_o200k.iter().any(|p| id.starts_with(p)) {
        return (Encoding::O200k, true);
    }
    if id.starts_with("gpt-") || id.starts_with("text-") || id.starts_with("davinci") {
        return (Encoding::Cl100k, true);
    }
    (Encoding::Cl100k, false)
}

fn bpe(enc: Encoding) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match enc {
        Encoding::O200k => O200K.get_or_init(|| tiktoken_rs::o200k_base().ok()),
        Encoding::Cl100k => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok()),
    }
    .as_ref()
}

fn raw_count(enc: Encoding, text: &str) -> u64 {
    match bpe(enc) {
        Some(b) => b.encode_with_special_tokens(text).len() as u64,
        // A byte-level BPE token is at least one byte, so the byte count bounds it.
        None => text.len() as u64,
    }
}

/// Tokens in a piece of text for `model`, margin included.
pub fn count_text_tokens(model: &str, text: &str) -> u64 {
    let (enc, native) = encoding_for(model);
    with_margin(raw_count(enc, text), native)
}

fn with_margin(n: u64, native: bool) -> u64 {
    if native {
        n
    } else {
        (n * FOREIGN_MARGIN_PERCENT).div_ceil(100)
    }
}

/// Tokens the whole request's prompt can take: every message, tool call and tool result,
/// and the tool definitions.
pub fn count_prompt_tokens(model: &str, req: &ChatRequest) -> u64 {
    let (enc, native) = encoding_for(model);
    let mut n = PRIMING;
    for m in &req.messages {
        n += PER_MESSAGE;
        n += match m {
            Message::System { content } | Message::User { content } => raw_count(enc, content),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                content.as_deref().map_or(0, |c| raw_count(enc, c))
                    + tool_calls
                        .iter()
                        .map(|c| {
                            PER_MESSAGE
                                + raw_count(enc, &c.id)
                                + raw_count(enc, &c.name)
                                + raw_count(enc, &c.arguments)
                        })
                        .sum::<u64>()
            }
            Message::Tool {
                call_id, content, ..
            } => raw_count(enc, call_id) + raw_count(enc, content),
        };
    }
    for t in &req.tools {
        n += PER_TOOL
            + raw_count(enc, &t.name)
            + raw_count(enc, &t.description)
            + raw_count(enc, &t.parameters.to_string());
    }
    with_margin(n, native)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ToolCall, ToolSpec};

    fn req(model: &str, tools: Vec<ToolSpec>) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: vec![
                Message::system("You are a careful assistant."),
                Message::user("Please read src/lib.rs and add a function."),
                Message::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "read_file".into(),
                        arguments: r#"{"path":"src/lib.rs"}"#.into(),
                    }],
                },
                Message::Tool {
                    call_id: "call_1".into(),
                    content: "pub fn add(a: i32, b: i32) -> i32 { a + b }".into(),
                    is_error: false,
                },
            ],
            tools,
            temperature: None,
            max_tokens: 100,
        }
    }

    #[test]
    fn counts_at_least_the_content_and_grow_with_tools() {
        let r = req("gpt-4o", vec![]);
        let text = "You are a careful assistant.Please read src/lib.rs and add a function.call_1read_file{\"path\":\"src/lib.rs\"}call_1pub fn add(a: i32, b: i32) -> i32 { a + b }";
        let plain = tiktoken_rs::o200k_base()
            .unwrap()
            .encode_with_special_tokens(text)
            .len() as u64;
        let n = count_prompt_tokens("gpt-4o", &r);
        assert!(n >= plain, "{n} < {plain}");
        let tool = ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            parameters: serde_json::json!({"type":"object","properties":{"path":{"type":"string"}}}),
        };
        assert!(count_prompt_tokens("gpt-4o", &req("gpt-4o", vec![tool])) > n);
    }

    #[test]
    fn foreign_models_get_a_margin() {
        let r = req("x", vec![]);
        let cl = count_prompt_tokens("gpt-3.5-turbo", &r);
        let claude = count_prompt_tokens("claude-sonnet-4-5", &r);
        assert_eq!(claude, (cl * 130).div_ceil(100));
        assert_eq!(count_text_tokens("gpt-4o", "hello world"), 2);
    }
}
