//! Check runs.

use reqwest::Method;
use serde::{Deserialize, Serialize};
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

/// GitHub takes at most this many annotations per request; more are sent in further
/// updates of the run, which append them.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

/// A note on lines of a file, shown in the check run and the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    pub annotation_level: AnnotationLevel,
    pub title: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

/// What a check run says: its summary, its annotations and the job it belongs to.
#[derive(Debug, Clone, Default)]
pub struct CheckOutput<'a> {
    pub summary: &'a str,
    pub annotations: &'a [Annotation],
    /// `external_id`: the job that made the run.
    pub external_id: Option<String>,
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
        let output = CheckOutput {
            summary,
            ..CheckOutput::default()
        };
        self.check_run_with(id, name, head_sha, status, &output)
            .await
    }

    /// [`Repo::check_run`] with annotations (sent [`ANNOTATIONS_PER_REQUEST`] at a time) and
    /// an external id.
    pub async fn check_run_with(
        &self,
        id: Option<u64>,
        name: &str,
        head_sha: &str,
        status: CheckStatus,
        output: &CheckOutput<'_>,
    ) -> Result<u64, GitHubError> {
        #[derive(Deserialize)]
        struct R {
            id: u64,
        }
        // Annotation text comes from models: it leaves through the same scrubbing and
        // neutralising as every other text the bot posts.
        let annotations: Vec<Annotation> = output
            .annotations
            .iter()
            .map(|a| Annotation {
                title: self.gh.markdown(&a.title),
                message: self.gh.markdown(&a.message),
                ..a.clone()
            })
            .collect();
        let mut batches = annotations.chunks(ANNOTATIONS_PER_REQUEST);
        let mut body = json!({
            "name": name,
            "head_sha": head_sha,
            "status": status.as_str(),
            "output": {
                "title": name,
                "summary": self.gh.markdown(output.summary),
                "annotations": batches.next().unwrap_or_default(),
            },
        });
        if let Some(e) = &output.external_id {
            body["external_id"] = json!(e);
        }
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
        for batch in batches {
            let more = json!({
                "output": {
                    "title": name,
                    "summary": self.gh.markdown(output.summary),
                    "annotations": batch,
                },
            });
            let _: R = self
                .write(Method::PATCH, &format!("/check-runs/{}", r.id), more)
                .await?;
        }
        Ok(r.id)
    }
}
