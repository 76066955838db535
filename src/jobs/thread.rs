//! What a job says on its thread, rendered in one place. A job emits [`Progress`] events; the
//! [`ThreadReporter`] renders the checklist, the mode line, the result and the cost summary,
//! and upserts the job's one marked comment (a retried job edits its comment, never posts a
//! second). Every event also goes to the job's event sink, so the transcript has the steps.

use crate::agent::JobEvent;
use crate::github::api::Repo;
use crate::github::client::GitHubError;

use super::JobCtx;

/// The client stamps everything it writes with a hidden mark so the bot's own words never
/// trigger it; this is how a body is recognised as its own (see `github::api::OWN_MARK`).
pub use crate::github::api::is_own_output;

/// The hidden marker that lets a retried job find and update its own comment.
pub fn marker(job_id: i64) -> String {
    format!("<!-- equitr:job={job_id} -->")
}

/// What a job tells its thread as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The job started: its headline and the steps it will take, none done yet.
    Started {
        head: &'static str,
        steps: &'static [&'static str],
    },
    /// Step `n` (counted from 0) of the ones it started with is done.
    Done(usize),
    /// A line under the checklist saying how the job runs (untrusted-context mode).
    Mode(String),
    /// The job's cost estimate, shown under the checklist before it spends.
    Estimate(String),
    /// The job ended: its result line, what it did in the job's own words, and the cost.
    Finished(Ending),
    /// The whole comment is this text: an answer that is not progress (a plan, a refusal).
    Said(String),
}

/// The end of a job, as its thread reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ending {
    pub headline: String,
    /// The run's own account (the worker's summary), shown under the headline.
    pub details: Option<String>,
    /// The cost summary (markdown table).
    pub costs: Option<String>,
    /// Whether the cost table is folded into a `<details>` block.
    pub fold_costs: bool,
}

impl Ending {
    /// A result line with the cost table under it.
    pub fn with_costs(headline: &str, costs: &str) -> Ending {
        Ending {
            headline: headline.to_string(),
            costs: Some(costs.to_string()),
            ..Ending::default()
        }
    }
}

/// Renders a job's [`Progress`] into its marked comment on one thread.
pub struct ThreadReporter<'a> {
    ctx: &'a JobCtx<'a>,
    /// The issue or pull request; `None`: the job has no thread to talk to (an automatic
    /// review shows its progress in the check run only), and nothing is posted.
    number: Option<u64>,
    board: Board,
    /// The comment once posted: later posts edit it by id instead of listing the thread's
    /// comments to find it again.
    comment: Option<u64>,
}

/// Where a job stands, and the comment that shows it.
#[derive(Debug, Default)]
struct Board {
    head: &'static str,
    steps: Vec<(&'static str, bool)>,
    mode: Option<String>,
    estimate: Option<String>,
}

impl<'a> ThreadReporter<'a> {
    pub fn new(ctx: &'a JobCtx<'a>, number: u64) -> ThreadReporter<'a> {
        ThreadReporter {
            ctx,
            number: Some(number),
            board: Board::default(),
            comment: None,
        }
    }

    /// A reporter that keeps the transcript but posts nothing.
    pub fn silent(ctx: &'a JobCtx<'a>) -> ThreadReporter<'a> {
        ThreadReporter {
            number: None,
            ..ThreadReporter::new(ctx, 0)
        }
    }

    /// Record the event and show the thread where the job stands now.
    pub async fn emit(&mut self, p: Progress) -> Result<(), GitHubError> {
        let text = self.record(p);
        self.post(&text).await
    }

    /// Record the event (the transcript, the state the next post shows) without posting:
    /// each post is a GitHub write, so quick steps are shown with the next slow one.
    pub fn record(&mut self, p: Progress) -> String {
        self.ctx
            .env
            .sink
            .emit(&JobEvent::Progress { step: describe(&p) });
        self.board.apply(p)
    }

    async fn post(&mut self, text: &str) -> Result<(), GitHubError> {
        let Some(number) = self.number else {
            return Ok(());
        };
        let marker = marker(self.ctx.id);
        if let Some(id) = self.comment {
            match self.ctx.repo.update_marked_comment(id, &marker, text).await {
                // Someone deleted it: post it again.
                Err(e) if e.status() == Some(404) => self.comment = None,
                other => return other.map(drop),
            }
        }
        let posted = self
            .ctx
            .repo
            .upsert_marked_comment(number, &marker, text)
            .await?;
        self.comment = Some(posted.id);
        Ok(())
    }
}

impl Board {
    /// Take in one event; the comment as it reads now.
    fn apply(&mut self, p: Progress) -> String {
        match p {
            Progress::Started { head, steps } => {
                self.head = head;
                self.steps = steps.iter().map(|s| (*s, false)).collect();
                self.checklist()
            }
            Progress::Done(n) => {
                if let Some(step) = self.steps.get_mut(n) {
                    step.1 = true;
                }
                self.checklist()
            }
            Progress::Mode(line) => {
                self.mode = Some(line);
                self.checklist()
            }
            Progress::Estimate(line) => {
                self.estimate = Some(line);
                self.checklist()
            }
            Progress::Finished(end) => self.ending(&end),
            Progress::Said(text) => text,
        }
    }

    /// The headline, the steps as a checklist, and the mode line.
    fn checklist(&self) -> String {
        if self.steps.is_empty() {
            return String::new();
        }
        let mut s = format!("{}\n\n", self.head);
        for (step, done) in &self.steps {
            s.push_str(&format!("- [{}] {step}\n", if *done { "x" } else { " " }));
        }
        if let Some(mode) = &self.mode {
            s.push_str(&format!("\n🔒 {mode}\n"));
        }
        if let Some(estimate) = &self.estimate {
            s.push_str(&format!("\n💰 {estimate}\n"));
        }
        s
    }

    fn ending(&self, end: &Ending) -> String {
        let mut parts = Vec::new();
        let list = self.checklist();
        if !list.is_empty() {
            parts.push(list.trim_end().to_string());
        }
        parts.push(end.headline.clone());
        if let Some(d) = end
            .details
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            parts.push(d.to_string());
        }
        if let Some(c) = &end.costs {
            parts.push(if end.fold_costs {
                format!("<details><summary>Cost</summary>\n\n{c}\n</details>")
            } else {
                c.clone()
            });
        }
        parts.join("\n\n")
    }
}

/// One line for the transcript.
fn describe(p: &Progress) -> String {
    match p {
        Progress::Started { head, .. } => format!("started: {head}"),
        Progress::Done(n) => format!("step {} done", n + 1),
        Progress::Mode(m) | Progress::Estimate(m) => m.clone(),
        Progress::Finished(e) => e.headline.clone(),
        Progress::Said(_) => "answered on the thread".into(),
    }
}

/// The repository's config could not be read: the thread is told which line is wrong.
pub async fn answer_broken_config(
    repo: &Repo<'_>,
    number: u64,
    job_id: i64,
    error: &impl std::fmt::Display,
) -> Result<(), GitHubError> {
    repo.upsert_marked_comment(
        number,
        &marker(job_id),
        &format!("⚠️ I could not read this repository's configuration:\n\n`{error}`\n\nFix the file on the default branch and ask again."),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_is_the_checklist_the_mode_the_result_and_the_cost() {
        let mut b = Board::default();
        b.apply(Progress::Started {
            head: "🤖 Working on this issue.",
            steps: &["Read the issue", "Push the branch"],
        });
        assert_eq!(
            b.apply(Progress::Done(0)),
            "🤖 Working on this issue.\n\n- [x] Read the issue\n- [ ] Push the branch\n"
        );
        b.apply(Progress::Mode("untrusted-context mode: @eve".into()));
        // A step that does not exist changes nothing.
        b.apply(Progress::Done(7));
        let end = b.apply(Progress::Finished(Ending {
            headline: "✅ Opened https://github.com/o/r/pull/2".into(),
            details: Some("  \n".into()),
            costs: Some("| role | cost |".into()),
            fold_costs: false,
        }));
        assert_eq!(
            end,
            "🤖 Working on this issue.\n\n- [x] Read the issue\n- [ ] Push the branch\n\n\
             🔒 untrusted-context mode: @eve\n\n✅ Opened https://github.com/o/r/pull/2\n\n| role | cost |"
        );
    }

    #[test]
    fn a_job_without_steps_shows_its_answer_and_folds_the_cost_when_asked() {
        let mut b = Board::default();
        let end = b.apply(Progress::Finished(Ending {
            headline: "The answer.".into(),
            details: None,
            costs: Some("table".into()),
            fold_costs: true,
        }));
        assert_eq!(
            end,
            "The answer.\n\n<details><summary>Cost</summary>\n\ntable\n</details>"
        );
        assert_eq!(b.apply(Progress::Said("as is".into())), "as is");
    }
}
