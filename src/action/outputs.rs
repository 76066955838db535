//! What an Action run reports: the conclusion, the step outputs (`GITHUB_OUTPUT`) and the
//! step summary (`GITHUB_STEP_SUMMARY`).

use std::collections::BTreeMap;
use std::io::Write as _;

use crate::llm::pricing::Usd;

/// How a run ended, from the least to the most telling: over several jobs the most telling
/// one is the run's (a failure over a success, which tells more than a denial or a skip).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Conclusion {
    /// Nothing decided yet (no job ran).
    #[default]
    None,
    Skipped,
    Denied,
    Success,
    Failure,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::None => "",
            Conclusion::Skipped => "skipped",
            Conclusion::Denied => "denied",
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
        }
    }
}

impl std::fmt::Display for Conclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the Action reports in its outputs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub conclusion: Conclusion,
    pub cost: Option<Usd>,
    pub pr_url: Option<String>,
    pub review_id: Option<u64>,
    pub summary: String,
}

impl Outcome {
    /// A run that did nothing, saying why.
    pub fn skipped(why: String) -> Outcome {
        Outcome {
            conclusion: Conclusion::Skipped,
            summary: why,
            ..Outcome::default()
        }
    }

    /// Take in one job's conclusion: the most telling one stays.
    pub fn conclude(&mut self, c: Conclusion) {
        self.conclusion = self.conclusion.max(c);
    }
}

/// The step summary is markdown GitHub renders like a comment: redacted and neutralised the
/// same way.
fn step_summary(env: &BTreeMap<String, String>, summary: &str) -> String {
    use crate::github::outbound::LinkPolicy;
    let api_url = env
        .get("GITHUB_API_URL")
        .map(String::as_str)
        .unwrap_or("https://api.github.com");
    let extra = env
        .get("EQUITR_LINK_HOSTS")
        .and_then(|v| LinkPolicy::parse_hosts(v).ok())
        .unwrap_or_default();
    let policy = LinkPolicy::for_api(api_url, &extra);
    crate::github::outbound::neutralise(&crate::scrub::scrub(summary), &policy)
}

/// Write the outputs (`GITHUB_OUTPUT`) and the step summary (`GITHUB_STEP_SUMMARY`).
pub fn report(env: &BTreeMap<String, String>, outcome: &Outcome) -> std::io::Result<()> {
    let cost = outcome
        .cost
        .map(|c| c.to_string().trim_start_matches('$').to_string())
        .unwrap_or_else(|| "0".into());
    if let Some(path) = env.get("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        writeln!(f, "cost_usd={cost}")?;
        writeln!(f, "pr_url={}", outcome.pr_url.as_deref().unwrap_or(""))?;
        writeln!(
            f,
            "review_id={}",
            outcome.review_id.map(|i| i.to_string()).unwrap_or_default()
        )?;
        writeln!(f, "conclusion={}", outcome.conclusion)?;
    }
    if let Some(path) = env.get("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        writeln!(
            f,
            "## equitr-coder: {}\n\n{}\n",
            outcome.conclusion,
            step_summary(env, &outcome.summary)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_telling_conclusion_wins() {
        let mut o = Outcome::default();
        for (c, then) in [
            (Conclusion::Skipped, Conclusion::Skipped),
            (Conclusion::Denied, Conclusion::Denied),
            (Conclusion::Skipped, Conclusion::Denied),
            (Conclusion::Success, Conclusion::Success),
            (Conclusion::Failure, Conclusion::Failure),
            (Conclusion::Success, Conclusion::Failure),
        ] {
            o.conclude(c);
            assert_eq!(o.conclusion, then);
        }
    }
}
