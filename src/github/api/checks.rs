//! Check runs.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::Repo;
use crate::github::client::GitHubError;

/// Where a check run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    InProgress,
    Completed(Conclusion),
}

impl CheckStatus {
    fn as_str(self) -> &'static str {
        match self {
            CheckStatus::InProgress => "in_progress",
            CheckStatus::Completed(_) => "completed",
        }
    }
}

/// How a completed check run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    /// Done, with nothing to pass or fail on (an incomplete review without findings).
    Neutral,
    Failure,
}

impl Conclusion {
    fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Neutral => "neutral",
            Conclusion::Failure => "failure",
        }
    }
}

impl Repo<'_> {
    /// Create a check run, or update it when `id` is given.
    pub async fn check_run(
        &self,
        id: Option<u64>,
        name: &str,
        head_sha: &str,
        status: CheckStatus,
        summary: &str,
    ) -> Result<u64, GitHubError> {
        #[derive(Deserialize)]
        struct R {
            id: u64,
        }
        let mut body = json!({
            "name": name,
            "head_sha": head_sha,
            "status": status.as_str(),
            "output": { "title": name, "summary": self.gh.markdown(summary) },
        });
        if let CheckStatus::Completed(c) = status {
            body["conclusion"] = json!(c.as_str());
        }
        let r: R = match id {
            Some(id) => {
                self.write(Method::PATCH, &format!("/check-runs/{id}"), body)
                    .await?
            }
            None => self.write(Method::POST, "/check-runs", body).await?,
        };
        Ok(r.id)
    }
}
