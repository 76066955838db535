//! What this bot already said on a pull request, read back from GitHub: the head its last
//! review covered, every finding it raised (by the marks on its comments and review bodies),
//! and, per inline finding, whether a person answered it (a reply, a 👎, a resolved thread)
//! and whether its thread is resolved. GitHub is the memory, so the service and the Action
//! (whose runs share no store) remember the same way; only the bot's own words count, so
//! nobody can silence a finding by pasting a mark.

use std::collections::{HashMap, HashSet};

use super::findings::{is_hex, recall, Code};
use crate::config::repo::Severity;
use crate::github::api::{PullComment, Repo, SubmittedReview};

/// A finding the bot raised inline earlier.
#[derive(Debug, Clone)]
pub struct Raised {
    pub fingerprint: String,
    pub code: Code,
    pub severity: Option<Severity>,
    pub path: String,
    /// The inline comment that raised it; `None` for one listed in a review body (which has
    /// no thread to resolve or reply on).
    pub comment_id: Option<u64>,
    /// A person replied, reacted 👎 or resolved the thread.
    pub answered: bool,
    /// The thread's GraphQL id and whether it is resolved, when GraphQL answered.
    pub thread: Option<(String, bool)>,
    /// The bot already said it was fixed.
    pub said_fixed: bool,
}

/// The bot's memory of one pull request.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// The head the bot's latest review was posted on.
    pub last_head: Option<String>,
    /// The head of the latest review that covered everything up to it (every file of its
    /// range read, none skipped but by the repository's filters): where the next review's
    /// range starts. A review cut short does not move it on.
    pub covered_head: Option<String>,
    /// Every fingerprint the bot raised, inline or in a body.
    pub known: HashSet<String>,
    pub raised: Vec<Raised>,
}

/// The mark on the bot's "fixed in …" reply.
pub const FIXED_MARK: &str = "<!-- equitr:fixed -->";

/// The mark on a review that did not cover all of its range (cut short). Reviews without it
/// covered theirs — those posted before the mark existed too, so an upgrade does not send
/// every open pull request back to a full review.
pub const PARTIAL_MARK: &str = "<!-- equitr:partial -->";

/// The mark a review body carries for an earlier body-listed finding it found fixed, so the
/// next review does not say so again.
pub fn fixed_mark(fingerprint: &str) -> String {
    format!("<!-- equitr:fixed={fingerprint} -->")
}

/// Every fingerprint `text` marks as fixed.
fn fixed_in(text: &str) -> impl Iterator<Item = &str> {
    text.split("<!-- equitr:fixed=")
        .skip(1)
        .filter_map(|p| p.split_once(" -->").map(|(fp, _)| fp))
        .filter(|fp| is_hex(fp))
}

impl Memory {
    /// Read the pull request's reviews, review comments and, with `threads` (where GraphQL
    /// answers), its review threads; a review that posts nothing needs no threads.
    pub async fn load(
        repo: &Repo<'_>,
        pr: u64,
        bot: &str,
        threads: bool,
    ) -> anyhow::Result<Memory> {
        let reviews = repo.reviews(pr).await?;
        let comments = repo.pull_comments(pr).await?;
        let threads = match threads {
            false => None,
            true => match repo.review_threads(pr).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(pr, error = %e, "could not read the review threads; resolved threads count as open");
                    None
                }
            },
        };
        let by_comment: HashMap<u64, (String, bool)> = threads
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t.first_comment?, (t.id, t.resolved))))
            .collect();
        Ok(Memory::of(&reviews, &comments, &by_comment, bot))
    }

    fn of(
        reviews: &[SubmittedReview],
        comments: &[PullComment],
        threads: &HashMap<u64, (String, bool)>,
        bot: &str,
    ) -> Memory {
        let own = |r: &&SubmittedReview| {
            r.user
                .as_ref()
                .is_some_and(|u| u.login.eq_ignore_ascii_case(bot))
        };
        let mut m = Memory::default();
        let mut bodies = Vec::new();
        for r in reviews.iter().filter(own) {
            let body = r.body.as_deref().unwrap_or_default();
            if !body.contains("<!-- equitr:job=") {
                continue;
            }
            m.last_head = r.commit_id.clone().or(m.last_head);
            if !body.contains(PARTIAL_MARK) {
                m.covered_head = r.commit_id.clone().or(m.covered_head);
            }
            bodies.push(body);
        }
        for c in comments
            .iter()
            .filter(|c| c.in_reply_to_id.is_none() && c.by(bot))
        {
            let replies = || comments.iter().filter(|r| r.in_reply_to_id == Some(c.id));
            let thread = threads.get(&c.id).cloned();
            let answered = replies().any(|r| !r.by(bot))
                || c.reactions.as_ref().is_some_and(|r| r.minus_one > 0)
                || thread.as_ref().is_some_and(|(_, resolved)| *resolved);
            let said_fixed = replies().any(|r| r.by(bot) && r.body.contains(FIXED_MARK));
            for r in recall(&c.body) {
                m.known.insert(r.fingerprint.clone());
                m.raised.push(Raised {
                    fingerprint: r.fingerprint,
                    code: r.code,
                    severity: r.severity,
                    path: c.path.clone(),
                    comment_id: Some(c.id),
                    answered,
                    thread: thread.clone(),
                    said_fixed,
                });
            }
        }
        // Findings listed in a review body (below the inline threshold, over the inline cap,
        // off the diff, or folded after a refusal): fixed once their code is gone, like the
        // inline ones, and said so once.
        let fixed: HashSet<&str> = bodies.iter().flat_map(|b| fixed_in(b)).collect();
        for body in bodies {
            for r in recall(body) {
                if !m.known.insert(r.fingerprint.clone()) {
                    continue;
                }
                let Some(path) = r.path else { continue };
                m.raised.push(Raised {
                    said_fixed: fixed.contains(r.fingerprint.as_str()),
                    fingerprint: r.fingerprint,
                    code: r.code,
                    severity: r.severity,
                    path,
                    comment_id: None,
                    answered: false,
                    thread: None,
                });
            }
        }
        m
    }
}
