//! The per-run budget rule, once for every front door.

use crate::llm::pricing::Usd;

/// A USD amount from configuration (already validated as finite and non-negative).
pub fn usd(v: Option<f64>) -> Option<Usd> {
    v.and_then(Usd::from_dollars_f64)
}

/// The cap one run may spend: the lowest of the operator's `llm.budget`, the repository's
/// `budget.per_run_usd` and a schedule's `budget_usd`. A repository file or a schedule can
/// tighten the operator's cap, never raise it; no cap at all only when none is set.
pub fn per_run_cap(operator: Option<Usd>, repo: Option<Usd>, schedule: Option<Usd>) -> Option<Usd> {
    [operator, repo, schedule].into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: f64) -> Option<Usd> {
        Usd::from_dollars_f64(x)
    }

    #[test]
    fn the_lowest_cap_holds_and_none_is_no_cap() {
        assert_eq!(per_run_cap(None, None, None), None);
        assert_eq!(per_run_cap(d(1.0), None, None), d(1.0));
        assert_eq!(per_run_cap(None, d(2.0), None), d(2.0));
        assert_eq!(per_run_cap(None, None, d(0.5)), d(0.5));
        // A repository cannot raise the operator's cap; a schedule cannot raise either.
        assert_eq!(per_run_cap(d(1.0), d(5.0), None), d(1.0));
        assert_eq!(per_run_cap(d(1.0), d(0.25), d(3.0)), d(0.25));
        assert_eq!(per_run_cap(d(1.0), d(0.25), d(0.1)), d(0.1));
        assert_eq!(per_run_cap(d(0.0), d(5.0), None), d(0.0));
    }
}
