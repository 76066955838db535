//! Money: token usage as providers report it, prices, integer dollars ([`pricing::Usd`]) and
//! the budget ledger that reserves before a call and settles after. A leaf: the store keeps
//! ledgers, the model layer prices calls, and neither depends on the other.

pub mod ledger;
pub mod pricing;

use serde::{Deserialize, Serialize};

/// Token usage as the provider reported it, normalised.
///
/// `input_tokens` is the whole prompt, cached parts included (OpenAI's `prompt_tokens`;
/// for Anthropic `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`).
/// `cached_input_tokens` and `cache_write_tokens` are the parts of it billed at other rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
    }
}
