//! What a run will cost, before it makes its first call: a range from the size of what it
//! reads (the diff's chunks, the task), the prompts around it, the models' prices and the
//! turns such a run takes. The low end assumes the fewest turns the run can take (one per
//! review chunk; a few for a task), the high end the turns a run of that size usually needs
//! with its context growing as it reads. Jobs show it and decline work whose low end cannot
//! fit the budget that is left; the caps themselves are enforced call by call.

use super::diff;
use super::review::ReviewRequest;
use super::review_scope;
use super::Orchestrator;
use crate::llm::pricing::{ModelPrice, Usd};
use crate::llm::tokens;
use crate::money::Usage;

/// A cost range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub low: Usd,
    pub high: Usd,
}

impl Estimate {
    pub fn describe(&self) -> String {
        format!("{}–{}", self.low, self.high)
    }
}

/// The system prompt, tool descriptions and instructions around what a call reads.
const OVERHEAD: u64 = 1_000;
/// What a tool turn adds to the context (a file read, a command's output).
const PER_TURN: u64 = 1_500;

/// `turns` calls reading `base` tokens, each later one `PER_TURN` more, answering `out`.
fn calls(price: &ModelPrice, base: u64, turns: u64, out: u64) -> Usd {
    let mut total = Usd::ZERO;
    for t in 0..turns {
        total += price.cost(&Usage {
            input_tokens: OVERHEAD + base + t * PER_TURN,
            output_tokens: out,
            ..Usage::default()
        });
    }
    total
}

impl Orchestrator {
    /// The estimate for [`Orchestrator::review`] of `req`; `None` when a model has no price.
    pub fn estimate_review(&self, req: &ReviewRequest) -> Option<Estimate> {
        let worker = self.worker.price?;
        let model = self.worker.model().to_string();
        let files = diff::parse(&req.diff);
        let (order, _) = review_scope::select(
            &files,
            &req.filters,
            &self.sensitive,
            super::review::MAX_CHUNK_TOKENS,
            |t| tokens::count_text_tokens(&model, t),
        );
        let context = tokens::count_text_tokens(&model, &req.context);
        let mut low = Usd::ZERO;
        let mut high = Usd::ZERO;
        for chunk in super::review::chunks(&files, &order, &model) {
            let t: u64 = chunk
                .iter()
                .map(|&i| tokens::count_text_tokens(&model, &files[i].text))
                .sum();
            low += calls(&worker, context + t, 1, 100);
            high += calls(&worker, context + t, 4, 500);
        }
        let sensitive: u64 = order
            .iter()
            .filter(|&&i| {
                self.sensitive.is_match(&files[i].path)
                    || review_scope::security_relevant(&files[i])
            })
            .map(|&i| tokens::count_text_tokens(&model, &files[i].text))
            .sum();
        if self.multi && sensitive > 0 {
            let sup = self.supervisor.price?;
            low += calls(&sup, context + sensitive, 1, 100);
            high += calls(&sup, context + sensitive, 3, 500);
        }
        Some(Estimate { low, high })
    }

    /// The estimate for [`Orchestrator::run`] of `task`: a few worker turns at least, and
    /// up to a dozen with the supervisor's plan and review at most.
    pub fn estimate_task(&self, task: &str) -> Option<Estimate> {
        let worker = self.worker.price?;
        let t = tokens::count_text_tokens(self.worker.model(), task);
        let turns = u64::from(self.cfg.orchestrator.max_iterations).clamp(1, 12);
        let low = calls(&worker, t, 2.min(turns), 200);
        let mut high = calls(&worker, t, turns, 600);
        if self.multi {
            let sup = self.supervisor.price?;
            // A routine task may never ask the supervisor: it counts in the high end only.
            high += calls(&sup, t + 3_000, 3, 800);
        }
        Some(Estimate { low, high })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_turns_cost_more_and_context_grows() {
        // $0.15 / $0.60 per million tokens.
        let price = ModelPrice::from_picos_per_token(150_000, 600_000);
        let one = calls(&price, 10_000, 1, 100);
        let four = calls(&price, 10_000, 4, 100);
        assert!(four.picos() > 4 * one.picos(), "{one} {four}");
        assert_eq!(
            Estimate {
                low: one,
                high: four
            }
            .describe(),
            format!("{one}–{four}")
        );
    }
}
