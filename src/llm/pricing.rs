//! STUB (replaced by the cost branch)
use super::Usage;
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u64);
impl Usd {
    pub const ZERO: Usd = Usd(0);
    pub fn from_picos(p: u64) -> Usd {
        Usd(p)
    }
    pub fn picos(self) -> u64 {
        self.0
    }
    pub fn from_dollars_f64(d: f64) -> Usd {
        Usd((d * 1e12).round() as u64)
    }
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e12
    }
}
impl std::ops::Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0 + o.0)
    }
}
impl std::ops::AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        self.0 += o.0
    }
}
impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(i: I) -> Usd {
        Usd(i.map(|u| u.0).sum())
    }
}
impl std::fmt::Display for Usd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.4}", self.as_f64())
    }
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub input_per_token: u64,
    pub cached_input_per_token: Option<u64>,
    pub cache_write_per_token: Option<u64>,
    pub output_per_token: u64,
}
impl ModelPrice {
    pub fn from_per_mtok(input: f64, output: f64) -> ModelPrice {
        ModelPrice {
            input_per_token: (input * 1e6).round() as u64,
            cached_input_per_token: None,
            cache_write_per_token: None,
            output_per_token: (output * 1e6).round() as u64,
        }
    }
    pub fn with_cached_input_per_mtok(mut self, v: f64) -> Self {
        self.cached_input_per_token = Some((v * 1e6).round() as u64);
        self
    }
    pub fn with_cache_write_per_mtok(mut self, v: f64) -> Self {
        self.cache_write_per_token = Some((v * 1e6).round() as u64);
        self
    }
    pub fn cost(&self, u: &Usage) -> Usd {
        Usd(u.input_tokens * self.input_per_token + u.output_tokens * self.output_per_token)
    }
    pub fn max_cost(&self, prompt: u64, out: u64) -> Usd {
        Usd(prompt * self.input_per_token + out * self.output_per_token)
    }
}
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    m: std::collections::BTreeMap<String, ModelPrice>,
}
impl PriceTable {
    pub fn builtin() -> Self {
        let mut t = PriceTable::default();
        t.insert("gpt-4o", ModelPrice::from_per_mtok(2.5, 10.0));
        t.insert("gpt-4o-mini", ModelPrice::from_per_mtok(0.15, 0.6));
        t
    }
    pub fn insert(&mut self, m: &str, p: ModelPrice) {
        self.m.insert(m.to_string(), p);
    }
    pub fn lookup(&self, m: &str) -> Option<ModelPrice> {
        self.m.get(m).copied()
    }
}
