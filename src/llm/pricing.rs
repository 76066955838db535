//! Money and prices. Amounts are integer picodollars (1e-12 USD): per-token prices such as
//! $0.0375 per million tokens are exact in that unit, so sums never drift.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use super::Usage;

/// An exact amount of US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u64);

const PICOS_PER_DOLLAR: u64 = 1_000_000_000_000;

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub fn from_picos(picos: u64) -> Usd {
        Usd(picos)
    }

    pub fn picos(self) -> u64 {
        self.0
    }

    /// A configured amount (`budget: 10.0`), rounded to the nearest picodollar; negative
    /// and non-finite amounts are zero (configuration validation refuses them first).
    pub fn from_dollars_f64(dollars: f64) -> Usd {
        if !dollars.is_finite() || dollars <= 0.0 {
            return Usd::ZERO;
        }
        Usd((dollars * PICOS_PER_DOLLAR as f64).round() as u64)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / PICOS_PER_DOLLAR as f64
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    /// Four decimals, rounded half up, without the `$`.
    pub fn fmt_4dp(self) -> String {
        const UNIT: u64 = PICOS_PER_DOLLAR / 10_000;
        let units = (self.0 + UNIT / 2) / UNIT;
        format!("{}.{:04}", units / 10_000, units % 10_000)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.fmt_4dp())
    }
}

impl std::ops::Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0.saturating_add(o.0))
    }
}

impl std::ops::AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        self.0 = self.0.saturating_add(o.0);
    }
}

impl std::ops::Sub for Usd {
    type Output = Usd;
    fn sub(self, o: Usd) -> Usd {
        self.saturating_sub(o)
    }
}

impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, |a, b| a + b)
    }
}

/// A model's prices in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_token: u64,
    /// Cache reads; the input price when the provider has no discount.
    pub cached_input_per_token: Option<u64>,
    /// Cache writes (Anthropic); the input price when absent.
    pub cache_write_per_token: Option<u64>,
    pub output_per_token: u64,
}

/// USD per million tokens → picodollars per token (× 1e12 / 1e6).
fn per_mtok_to_picos(usd_per_mtok: f64) -> u64 {
    if !usd_per_mtok.is_finite() || usd_per_mtok <= 0.0 {
        return 0;
    }
    (usd_per_mtok * 1_000_000.0).round() as u64
}

impl ModelPrice {
    /// Prices as people write them: USD per million tokens.
    pub fn from_per_mtok(input: f64, output: f64) -> ModelPrice {
        ModelPrice {
            input_per_token: per_mtok_to_picos(input),
            cached_input_per_token: None,
            cache_write_per_token: None,
            output_per_token: per_mtok_to_picos(output),
        }
    }

    pub fn with_cached_input_per_mtok(mut self, usd: f64) -> ModelPrice {
        self.cached_input_per_token = Some(per_mtok_to_picos(usd));
        self
    }

    pub fn with_cache_write_per_mtok(mut self, usd: f64) -> ModelPrice {
        self.cache_write_per_token = Some(per_mtok_to_picos(usd));
        self
    }

    /// The cost of one call's reported usage.
    pub fn cost(&self, u: &Usage) -> Usd {
        let cached = u.cached_input_tokens.min(u.input_tokens);
        let written = u.cache_write_tokens.min(u.input_tokens - cached);
        let plain = u.input_tokens - cached - written;
        let parts = [
            (plain, self.input_per_token),
            (
                cached,
                self.cached_input_per_token.unwrap_or(self.input_per_token),
            ),
            (
                written,
                self.cache_write_per_token.unwrap_or(self.input_per_token),
            ),
            (u.output_tokens, self.output_per_token),
        ];
        Usd(parts.iter().fold(0u64, |acc, (tokens, price)| {
            acc.saturating_add(tokens.saturating_mul(*price))
        }))
    }

    /// The most a call can cost: the whole prompt at the full input price (a cache write
    /// may cost more than that, so the dearer of the two) plus every allowed output token.
    pub fn max_cost(&self, prompt_tokens: u64, max_output_tokens: u64) -> Usd {
        let input = self
            .input_per_token
            .max(self.cache_write_per_token.unwrap_or(0));
        Usd(prompt_tokens
            .saturating_mul(input)
            .saturating_add(max_output_tokens.saturating_mul(self.output_per_token)))
    }
}

/// Prices by model id: the built-in table plus configured overrides.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, ModelPrice>,
}

const BUILTIN: &str = include_str!("prices.tsv");

fn builtin_prices() -> &'static HashMap<String, ModelPrice> {
    static TABLE: OnceLock<HashMap<String, ModelPrice>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let num = |s: &str| s.trim().parse::<u64>().ok();
        BUILTIN
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let (model, input, cached, write, output) =
                    (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?, f.get(4)?);
                Some((
                    model.to_string(),
                    ModelPrice {
                        input_per_token: num(input)?,
                        cached_input_per_token: num(cached),
                        cache_write_per_token: num(write),
                        output_per_token: num(output)?,
                    },
                ))
            })
            .collect()
    })
}

impl PriceTable {
    /// The built-in table (LiteLLM 1.110.2's prices, see `prices.tsv`).
    pub fn builtin() -> PriceTable {
        PriceTable {
            prices: builtin_prices().clone(),
        }
    }

    /// An empty table, for tests and for users who want only their own prices.
    pub fn empty() -> PriceTable {
        PriceTable::default()
    }

    /// Add or replace a model's price; configured prices win over the built-in ones.
    pub fn insert(&mut self, model: &str, price: ModelPrice) {
        self.prices.insert(model.to_lowercase(), price);
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// The price of `model`, accepting provider prefixes (`openai/gpt-4o`,
    /// `openrouter/anthropic/claude-…`) and dated ids (`gpt-4o-2024-08-06`,
    /// `claude-sonnet-4-5-20250929`) of known models. Unknown → `None`: an unknown model is
    /// never priced at zero.
    pub fn lookup(&self, model: &str) -> Option<ModelPrice> {
        let id = model.trim().to_lowercase();
        // Try the whole id, then without each leading `provider/` segment.
        let mut candidates = vec![id.as_str()];
        let mut rest = id.as_str();
        while let Some((_, tail)) = rest.split_once('/') {
            candidates.push(tail);
            rest = tail;
        }
        for c in &candidates {
            if let Some(p) = self.prices.get(*c) {
                return Some(*p);
            }
        }
        for c in &candidates {
            if let Some(base) = strip_date(c) {
                if let Some(p) = self.prices.get(base) {
                    return Some(*p);
                }
            }
        }
        None
    }
}

/// `gpt-4o-2024-08-06` → `gpt-4o`; `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`;
/// `claude-3-5-sonnet-latest` → `claude-3-5-sonnet`.
fn strip_date(id: &str) -> Option<&str> {
    if let Some(base) = id.strip_suffix("-latest") {
        return Some(base);
    }
    let bytes = id.as_bytes();
    // -YYYYMMDD
    if id.len() > 9 {
        let tail = &id[id.len() - 9..];
        if tail.starts_with('-') && tail[1..].bytes().all(|b| b.is_ascii_digit()) {
            return Some(&id[..id.len() - 9]);
        }
    }
    // -YYYY-MM-DD
    if id.len() > 11 {
        let tail = &bytes[id.len() - 11..];
        let is_date = tail[0] == b'-'
            && tail[5] == b'-'
            && tail[8] == b'-'
            && [1, 2, 3, 4, 6, 7, 9, 10]
                .iter()
                .all(|&i| tail[i].is_ascii_digit());
        if is_date {
            return Some(&id[..id.len() - 11]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, write: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            cache_write_tokens: write,
            output_tokens: output,
        }
    }

    #[test]
    fn builtin_has_the_common_models_at_their_list_prices() {
        let t = PriceTable::builtin();
        assert_eq!(
            t.lookup("gpt-4o"),
            Some(ModelPrice::from_per_mtok(2.5, 10.0).with_cached_input_per_mtok(1.25))
        );
        assert_eq!(
            t.lookup("gpt-4o-mini").unwrap(),
            ModelPrice::from_per_mtok(0.15, 0.60).with_cached_input_per_mtok(0.075)
        );
        let sonnet = t.lookup("claude-sonnet-4-5").unwrap();
        assert_eq!(
            sonnet,
            ModelPrice::from_per_mtok(3.0, 15.0)
                .with_cached_input_per_mtok(0.3)
                .with_cache_write_per_mtok(3.75)
        );
        for m in [
            "gemini-2.5-pro",
            "deepseek-chat",
            "mistral-large-latest",
            "gpt-4.1",
            "o3-mini",
        ] {
            assert!(t.lookup(m).is_some(), "{m}");
        }
    }

    #[test]
    fn prefixes_dates_and_case() {
        let t = PriceTable::builtin();
        let base = t.lookup("gpt-4o");
        assert_eq!(t.lookup("openai/gpt-4o"), base);
        assert_eq!(t.lookup("openrouter/openai/gpt-4o"), base);
        assert_eq!(t.lookup("GPT-4o"), base);
        assert_eq!(t.lookup("gpt-4o-2099-01-01"), base);
        assert_eq!(
            t.lookup("anthropic/claude-sonnet-4-5-20991231"),
            t.lookup("claude-sonnet-4-5")
        );
        assert_eq!(t.lookup("mystery-model-9"), None);
        assert_eq!(t.lookup(""), None);
    }

    #[test]
    fn overrides_win() {
        let mut t = PriceTable::builtin();
        t.insert("gpt-4o", ModelPrice::from_per_mtok(1.0, 2.0));
        assert_eq!(t.lookup("gpt-4o").unwrap().output_per_token, 2_000_000);
    }

    #[test]
    fn exact_costs() {
        // gpt-4o-mini: 1,234 input of which 200 cached + 567 output
        // = 1034 × 150000 + 200 × 75000 + 567 × 600000 picos
        let p = PriceTable::builtin().lookup("gpt-4o-mini").unwrap();
        let c = p.cost(&usage(1234, 200, 0, 567));
        assert_eq!(c.picos(), 1034 * 150_000 + 200 * 75_000 + 567 * 600_000);
        assert_eq!(c.to_string(), "$0.0005");
        // Claude with a cache write: 10,000 input = 6,000 plain + 3,000 read + 1,000 written.
        let s = PriceTable::builtin().lookup("claude-sonnet-4-5").unwrap();
        let c = s.cost(&usage(10_000, 3_000, 1_000, 2_000));
        assert_eq!(
            c.picos(),
            6_000 * 3_000_000 + 3_000 * 300_000 + 1_000 * 3_750_000 + 2_000 * 15_000_000
        );
        assert_eq!(c.to_string(), "$0.0527");
    }

    #[test]
    fn display_rounds_half_up() {
        assert_eq!(Usd::from_picos(50_000_000).to_string(), "$0.0001");
        assert_eq!(Usd::from_picos(49_999_999).to_string(), "$0.0000");
        assert_eq!(Usd::from_dollars_f64(12.34567).to_string(), "$12.3457");
        assert_eq!(Usd::from_dollars_f64(10.0).to_string(), "$10.0000");
    }

    #[test]
    fn max_cost_bounds_any_real_cost() {
        let s = PriceTable::builtin().lookup("claude-sonnet-4-5").unwrap();
        let max = s.max_cost(1000, 500);
        for (cached, write) in [(0, 0), (1000, 0), (0, 1000), (500, 500)] {
            assert!(s.cost(&usage(1000, cached, write, 500)) <= max);
        }
    }
}
