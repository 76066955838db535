//! `/equitr cost`: this month's spend against the repository's cap, from the job's ledger —
//! the same text whichever front door keeps the ledger.

use crate::llm::ledger::{Accuracy, MonthSpend};

use super::{JobCtx, JobReport};

/// The answer, from what the ledger knows of the month.
pub fn text(repo: &str, month: Option<&MonthSpend>) -> String {
    let Some(m) = month else {
        return "The ledger could not be read.".into();
    };
    let when = match &m.month {
        Some(name) => format!("This month ({name})"),
        None => "This month".into(),
    };
    let mut text = match m.cap {
        Some(cap) => format!("{when} {repo} has spent {} of its {cap} budget.", m.spent),
        None => format!(
            "{when} {repo} has spent {}; it has no monthly cap.",
            m.spent
        ),
    };
    if !m.scheduled.is_empty() {
        text.push_str("\n\nOf which scheduled tasks:\n");
        for (name, usd) in &m.scheduled {
            text.push_str(&format!("- `{name}`: {usd}\n"));
        }
    }
    text
}

/// How good the estimates have been, by job kind.
pub fn accuracy_text(acc: &[Accuracy]) -> String {
    if acc.is_empty() {
        return String::new();
    }
    let mut t = String::from("\n\nEstimates before each job, against what it cost:\n");
    for a in acc {
        t.push_str(&format!(
            "- {}: {} job(s), actual ÷ estimate {:.2}× (median), {} within the estimated range\n",
            a.kind, a.jobs, a.median_ratio, a.within
        ));
    }
    t
}

pub(super) async fn run(ctx: &JobCtx<'_>, number: u64) -> anyhow::Result<JobReport> {
    let month = ctx.ledger.month_spend().await;
    let mut text = text(&ctx.repo.name.to_string(), month.as_ref());
    text.push_str(&accuracy_text(&ctx.ledger.estimate_accuracy().await));
    ctx.repo.create_comment(number, &text).await?;
    Ok(JobReport::done(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::pricing::Usd;

    #[test]
    fn the_answer_names_the_month_the_spend_the_cap_and_the_schedules() {
        let usd = |x| Usd::from_dollars_f64(x).unwrap();
        let mut m = MonthSpend {
            month: Some("2026-12".into()),
            spent: usd(1.5),
            cap: Some(usd(10.0)),
            scheduled: vec![("Weekly cleanup".into(), usd(0.25))],
        };
        assert_eq!(
            text("o/r", Some(&m)),
            "This month (2026-12) o/r has spent $1.5000 of its $10.0000 budget.\n\n\
             Of which scheduled tasks:\n- `Weekly cleanup`: $0.2500\n"
        );
        m.cap = None;
        m.scheduled.clear();
        m.month = None;
        assert_eq!(
            text("o/r", Some(&m)),
            "This month o/r has spent $1.5000; it has no monthly cap."
        );
        assert_eq!(text("o/r", None), "The ledger could not be read.");
    }
}
