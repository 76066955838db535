//! The price of a job before it starts: the estimate is shown on the thread, recorded in the
//! ledger beside what the job really cost, and a job whose low end cannot fit what the
//! budget has left declines before any model call, naming the numbers and the setting that
//! would let it run.

use crate::agent::estimate::Estimate;
use crate::llm::ledger::Headroom;

use super::JobCtx;

/// What the job may do, priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Priced {
    /// Go on; the line for the thread, when there is an estimate.
    Go(Option<String>),
    /// Stop before the first call: the thread's text.
    Decline(String),
}

/// The line the thread shows, and whether the job fits `room`.
pub fn judge(what: &str, est: Option<Estimate>, room: Option<&Headroom>, narrow: &str) -> Priced {
    let Some(est) = est else {
        return Priced::Go(None);
    };
    let line = format!("Estimated cost: {}", est.describe());
    match room {
        Some(room) if est.low > room.left => Priced::Decline(format!(
            "🛑 Not started: this {what} would cost at least {} (estimate {}), more than the {} \
             left under `{}` (a cap of {}). Nothing was spent and no model was called. To run \
             it, raise `{}`{narrow}.",
            est.low.precise(),
            est.describe(),
            room.left.precise(),
            room.knob,
            room.cap.precise(),
            room.knob.split_whitespace().next().unwrap_or(&room.knob),
        )),
        Some(room) => Priced::Go(Some(format!(
            "{line} ({} left under `{}`)",
            room.left, room.knob
        ))),
        None => Priced::Go(Some(line)),
    }
}

/// Price the job against its ledger, and record the estimate for `/equitr cost`.
pub async fn price(ctx: &JobCtx<'_>, what: &str, est: Option<Estimate>, narrow: &str) -> Priced {
    let room = ctx.ledger.headroom().await;
    let priced = judge(what, est, room.as_ref(), narrow);
    // Only jobs that go ahead count towards `/equitr cost`'s accuracy.
    if let (Some(e), Priced::Go(_)) = (est, &priced) {
        ctx.ledger
            .note_estimate(ctx.kind.name(), e.low, e.high)
            .await;
    }
    priced
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::pricing::Usd;

    fn usd(x: f64) -> Usd {
        Usd::from_dollars_f64(x).unwrap()
    }

    #[test]
    fn a_job_whose_low_end_cannot_fit_declines_naming_the_numbers_and_the_knob() {
        let est = Some(Estimate {
            low: usd(0.5),
            high: usd(2.0),
        });
        let room = Headroom {
            left: usd(0.25),
            cap: usd(10.0),
            knob: "budget.monthly_usd".into(),
        };
        assert_eq!(
            judge(
                "review",
                est,
                Some(&room),
                " or narrow it with `review.exclude`"
            ),
            Priced::Decline(
                "🛑 Not started: this review would cost at least $0.5000 (estimate \
                 $0.5000–$2.0000), more than the $0.2500 left under `budget.monthly_usd` (a cap \
                 of $10.0000). Nothing was spent and no model was called. To run it, raise \
                 `budget.monthly_usd` or narrow it with `review.exclude`."
                    .into()
            )
        );
        let roomy = Headroom {
            left: usd(1.0),
            ..room
        };
        assert_eq!(
            judge("review", est, Some(&roomy), ""),
            Priced::Go(Some(
                "Estimated cost: $0.5000–$2.0000 ($1.0000 left under `budget.monthly_usd`)".into()
            ))
        );
        assert_eq!(judge("review", None, Some(&roomy), ""), Priced::Go(None));
        assert_eq!(usd(0.00001).precise(), "$0.00001");
        assert_eq!(usd(0.25).precise(), "$0.2500");
        assert_eq!(Usd::ZERO.precise(), "$0.0000");
    }
}
