//! Prompt token counting for budget reservations.
//!
//! The counts are deliberately an UPPER BOUND of what the provider will bill: the ledger
//! reserves `count × input price` before a call, and an estimate that is too low could let a
//! cap be crossed. Being a little high only makes a call near the cap be refused early.
//!
//! * OpenAI models are counted with their own tokenizer (`o200k_base` for gpt-4o, gpt-4.1,
//!   gpt-4.5, gpt-5+, o-series; `cl100k_base` for older ones) plus OpenAI's documented
//!   per-message framing (3 tokens/message + 1 for the name, 3 for priming the reply; we use 4
//!   and 3) and a margin for how tool definitions are rendered.
//! * Other providers (Claude, Gemini, Mistral, DeepSeek, …) use tokenizers we do not have;
//!   they are counted with `cl100k_base` and multiplied by [`FOREIGN_TOKENIZER_MARGIN`]. With
//!   tools, a fixed [`FOREIGN_TOOLS_OVERHEAD`] covers the tool-use system prompt providers add
//!   (Anthropic documents ~350 tokens for it).
//!
//! The tokenizers' tables are embedded in the binary ([`super::bpe`]); each is built on first
//! use, once per process, and shared by every job: a process whose models are all OpenAI's
//! 4o-or-later builds only `o200k_base`, one with only Claude or Gemini only `cl100k_base`.

use std::sync::OnceLock;

use super::bpe::Bpe;
use super::{ChatRequest, Message};

/// Multiplier (as a fraction) for models whose tokenizer is not an OpenAI one: cl100k counts
/// × 1.35, rounded up. Claude's and Mistral's tokenizers produce up to roughly a third more
/// tokens than cl100k on code and non-English text; Gemini's usually fewer.
pub const FOREIGN_TOKENIZER_MARGIN: (u64, u64) = (135, 100);
/// Tokens added once per request that offers tools to a non-OpenAI model.
pub const FOREIGN_TOOLS_OVERHEAD: u64 = 500;
/// Framing tokens per message (role markers, separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// Framing per tool call in an assistant message and per offered tool (OpenAI renders tools
/// as a TypeScript-like namespace; its wrapper is not in the JSON we count).
pub const TOKENS_PER_TOOL: u64 = 8;
/// Wrapper around the whole tool list.
pub const TOOLS_OVERHEAD: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tokenizer {
    O200k,
    Cl100k,
    /// Not an OpenAI model: cl100k with a safety margin.
    Foreign,
}

fn bare_model(model: &str) -> String {
    let m = model.trim().to_ascii_lowercase();
    // `openrouter/openai/gpt-4o` → `gpt-4o`; `ft:gpt-4o-mini-…:org::id` → `gpt-4o-mini-…`.
    let last = m.rsplit('/').next().unwrap_or(&m).to_string();
    match last.strip_prefix("ft:") {
        Some(rest) => rest.to_string(),
        None => last,
    }
}

fn tokenizer_for(model: &str) -> Tokenizer {
    let m = bare_model(model);
    let is_o_series = {
        let mut b = m.bytes();
        b.next() == Some(b'o') && b.next().is_some_and(|c| c.is_ascii_digit())
    };
    let o200k_prefixes = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "gpt-6",
        "gpt-oss",
        "gpt-audio",
        "chatgpt-",
        "codex-",
        "computer-use",
    ];
    if is_o_series || o200k_prefixes.iter().any(|p| m.starts_with(p)) {
        Tokenizer::O200k
    } else if m.starts_with("gpt-") || m.starts_with("text-") || m.starts_with("davinci") {
        Tokenizer::Cl100k
    } else {
        Tokenizer::Foreign
    }
}

fn bpe(which: Tokenizer) -> Option<&'static Bpe> {
    static O200K: OnceLock<Option<Bpe>> = OnceLock::new();
    static CL100K: OnceLock<Option<Bpe>> = OnceLock::new();
    // Construction only fails if the embedded table were corrupt; then `raw_count` falls
    // back to counting bytes, which is still an upper bound.
    match which {
        Tokenizer::O200k => O200K.get_or_init(Bpe::o200k),
        Tokenizer::Cl100k | Tokenizer::Foreign => CL100K.get_or_init(Bpe::cl100k),
    }
    .as_ref()
}

/// Text longer than this is counted in pieces of at most this many bytes. The tokenizer's
/// pre-tokenising regex recurses over one unbroken run of letters or digits (a multi-megabyte
/// run from a model overflowed the stack), and its merge step is quadratic in such a run. A
/// piece boundary can only split a token in two, so the sum over pieces stays an upper bound.
pub const PIECE_BYTES: usize = 2 * 1024;
/// Text longer than this is not tokenized at all: its byte length is the bound (every token
/// covers at least one byte). Such text is rare — tool arguments are capped and tool output
/// truncated — and counting it exactly is not worth the time.
pub const COUNT_BYTES_PAST: usize = 256 * 1024;

/// Tokens of `text` with the model's tokenizer, before any margin.
fn raw_count(which: Tokenizer, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    if text.len() > COUNT_BYTES_PAST {
        return text.len() as u64;
    }
    if text.len() > PIECE_BYTES {
        let mut total = 0u64;
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = rest.len().min(PIECE_BYTES);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            let (piece, tail) = rest.split_at(end);
            total = total.saturating_add(raw_piece(which, piece));
            rest = tail;
        }
        return total;
    }
    raw_piece(which, text)
}

fn raw_piece(which: Tokenizer, text: &str) -> u64 {
    match bpe(which) {
        // As `encode_ordinary`: special-token text in a prompt is sent as plain text, which
        // tokenizes to more tokens than the special token would.
        Some(bpe) => bpe.count(text),
        // Every BPE token covers at least one byte.
        None => text.len() as u64,
    }
}

fn with_margin(which: Tokenizer, tokens: u64) -> u64 {
    match which {
        Tokenizer::Foreign => {
            let (num, den) = FOREIGN_TOKENIZER_MARGIN;
            tokens.saturating_mul(num).div_ceil(den)
        }
        _ => tokens,
    }
}

/// Upper-bound token count of `text` for `model` (margin included for non-OpenAI models).
pub fn count_text_tokens(model: &str, text: &str) -> u64 {
    let which = tokenizer_for(model);
    with_margin(which, raw_count(which, text))
}

/// Upper-bound count of the prompt tokens `req` will be billed for on `model`: every message
/// (content, tool calls with id, name and arguments, tool results with their call id), every
/// offered tool (name, description, JSON schema), and the framing around them.
pub fn count_prompt_tokens(model: &str, req: &ChatRequest) -> u64 {
    let which = tokenizer_for(model);
    count_with(which, req, &|s: &str| raw_count(which, s))
}

/// Remembers the token count of every text it has seen, so that counting a conversation
/// that grows by a message per turn costs the new message, not the whole history again
/// (the orchestrator counts before every call).
#[derive(Default)]
pub struct TokenCache {
    counts: std::sync::Mutex<std::collections::HashMap<(Tokenizer, usize, u64), u64>>,
}

/// Past this many remembered texts the cache starts over, to bound its memory.
const TOKEN_CACHE_ENTRIES: usize = 8192;

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The same number as [`count_prompt_tokens`], from remembered counts where it can.
    pub fn count_prompt_tokens(&self, model: &str, req: &ChatRequest) -> u64 {
        use std::hash::{Hash, Hasher};
        let which = tokenizer_for(model);
        let count = |s: &str| -> u64 {
            if s.len() < 64 {
                return raw_count(which, s);
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            s.hash(&mut h);
            let key = (which, s.len(), h.finish());
            let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get(&key) {
                return *n;
            }
            if map.len() >= TOKEN_CACHE_ENTRIES {
                map.clear();
            }
            let n = raw_count(which, s);
            map.insert(key, n);
            n
        };
        count_with(which, req, &count)
    }
}

fn count_with(which: Tokenizer, req: &ChatRequest, count: &dyn Fn(&str) -> u64) -> u64 {
    let mut total = REPLY_PRIMING_TOKENS;
    for msg in &req.messages {
        total += TOKENS_PER_MESSAGE;
        total += match msg {
            Message::System { content } | Message::User { content } => count(content),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let text = content.as_deref().map_or(0, count);
                let calls: u64 = tool_calls
                    .iter()
                    .map(|c| TOKENS_PER_TOOL + count(&c.id) + count(&c.name) + count(&c.arguments))
                    .sum();
                text + calls
            }
            Message::Tool {
                call_id, content, ..
            } => count(call_id) + count(content),
        };
    }
    if !req.tools.is_empty() {
        total += TOOLS_OVERHEAD;
        for tool in &req.tools {
            // serde_json::Value always serialises; an empty string would only undercount the
            // schema, so fall back to its Debug form, which is longer.
            let schema = serde_json::to_string(&tool.parameters)
                .unwrap_or_else(|_| format!("{:?}", tool.parameters));
            total +=
                TOKENS_PER_TOOL + count(&tool.name) + count(&tool.description) + count(&schema);
        }
        if which == Tokenizer::Foreign {
            total += FOREIGN_TOOLS_OVERHEAD;
        }
    }
    with_margin(which, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_unbroken_string_is_counted_on_a_small_stack() {
        // A tokio worker's stack is 2 MiB; counting 4 MB of one letter overflowed it.
        let counts = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let huge = "a".repeat(4 * 1024 * 1024);
                let digits = "7".repeat(COUNT_BYTES_PAST - 1);
                (
                    count_text_tokens("gpt-4o", &huge),
                    count_text_tokens("claude-sonnet-4-5", &digits),
                )
            })
            .unwrap()
            .join()
            .expect("no stack overflow, no panic");
        assert!(counts.0 > 0 && counts.1 > 0);
        // Pieces never count fewer tokens than the whole.
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(1000);
        let whole = raw_piece(Tokenizer::O200k, &prose);
        assert!(raw_count(Tokenizer::O200k, &prose) >= whole);
        assert!(raw_count(Tokenizer::O200k, &"ü".repeat(10_000)) > 0);
    }

    #[test]
    fn tokenizer_choice() {
        assert_eq!(tokenizer_for("gpt-4o-mini"), Tokenizer::O200k);
        assert_eq!(tokenizer_for("openai/gpt-4.1-2025-04-14"), Tokenizer::O200k);
        assert_eq!(tokenizer_for("o3-mini"), Tokenizer::O200k);
        assert_eq!(tokenizer_for("gpt-5.4"), Tokenizer::O200k);
        assert_eq!(
            tokenizer_for("ft:gpt-4o-mini-2024-07-18:acme::x"),
            Tokenizer::O200k
        );
        assert_eq!(tokenizer_for("gpt-3.5-turbo"), Tokenizer::Cl100k);
        assert_eq!(tokenizer_for("gpt-4-turbo"), Tokenizer::Cl100k);
        assert_eq!(tokenizer_for("claude-sonnet-4-5"), Tokenizer::Foreign);
        assert_eq!(tokenizer_for("gemini-2.5-pro"), Tokenizer::Foreign);
        assert_eq!(tokenizer_for("ollama/llama3"), Tokenizer::Foreign);
        assert_eq!(tokenizer_for("omni-model"), Tokenizer::Foreign);
    }

    #[test]
    fn the_cache_counts_what_the_plain_count_does() {
        let long = "fn main() { println!(\"hello\"); }\n".repeat(50);
        let req = |n: usize| ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: (0..n)
                .map(|i| crate::llm::Message::user(format!("{long}{i}")))
                .collect(),
            tools: vec![],
            temperature: None,
            max_tokens: 10,
        };
        let cache = TokenCache::new();
        for model in ["gpt-4o-mini", "claude-sonnet-4-5"] {
            for n in [1, 2, 5] {
                assert_eq!(
                    cache.count_prompt_tokens(model, &req(n)),
                    count_prompt_tokens(model, &req(n))
                );
            }
        }
    }

    #[test]
    fn margin_rounds_up() {
        assert_eq!(with_margin(Tokenizer::Foreign, 100), 135);
        assert_eq!(with_margin(Tokenizer::Foreign, 1), 2);
        assert_eq!(with_margin(Tokenizer::O200k, 101), 101);
    }
}
