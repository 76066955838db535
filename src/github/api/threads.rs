//! Review threads through GitHub's GraphQL API: which threads a pull request has and whether
//! they are resolved, and resolving one. REST has no endpoint for either.

use reqwest::Method;
use serde_json::{json, Value};

use super::{Repo, ReviewThread};
use crate::github::client::GitHubError;

const THREADS: &str = "query($owner: String!, $name: String!, $number: Int!, $after: String) { \
repository(owner: $owner, name: $name) { pullRequest(number: $number) { \
reviewThreads(first: 100, after: $after) { nodes { id isResolved comments(first: 1) { nodes { databaseId } } } \
pageInfo { hasNextPage endCursor } } } } }";

const RESOLVE: &str = "mutation($threadId: ID!) { resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } } }";

/// Why GraphQL refused: its first error's type and message.
fn refusal(v: &Value) -> Option<String> {
    let e = v.get("errors")?.as_array()?.first()?;
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("ERROR");
    let message = e.get("message").and_then(Value::as_str).unwrap_or("");
    let message: String = message.chars().take(200).collect();
    Some(format!("{kind}: {message}"))
}

impl Repo<'_> {
    /// GitHub's GraphQL endpoint beside its REST API (`/graphql` on github.com,
    /// `/api/graphql` beside GitHub Enterprise's `/api/v3`).
    async fn graphql(&self, query: &str, variables: Value) -> Result<Value, GitHubError> {
        let path = if self.gh.api_url().trim_end_matches('/').ends_with("/api/v3") {
            "/../graphql"
        } else {
            "/graphql"
        };
        let v: Value = self
            .gh
            .send_json(
                Method::POST,
                path,
                self.who(),
                Some(&json!({ "query": query, "variables": variables })),
            )
            .await?;
        match refusal(&v) {
            Some(reason) => Err(GitHubError::Refused {
                path: "/graphql".into(),
                reason,
            }),
            None => Ok(v),
        }
    }

    /// The review threads of a pull request.
    pub async fn review_threads(&self, pr: u64) -> Result<Vec<ReviewThread>, GitHubError> {
        let mut out = Vec::new();
        let mut after = Value::Null;
        loop {
            let v = self
                .graphql(
                    THREADS,
                    json!({"owner": self.name.owner, "name": self.name.name, "number": pr, "after": after}),
                )
                .await?;
            let threads = &v["data"]["repository"]["pullRequest"]["reviewThreads"];
            for t in threads["nodes"].as_array().into_iter().flatten() {
                out.push(ReviewThread {
                    id: t["id"].as_str().unwrap_or_default().to_string(),
                    resolved: t["isResolved"].as_bool().unwrap_or(false),
                    first_comment: t["comments"]["nodes"][0]["databaseId"].as_u64(),
                });
            }
            let page = &threads["pageInfo"];
            if page["hasNextPage"].as_bool() != Some(true) || out.len() >= 1000 {
                return Ok(out);
            }
            after = page["endCursor"].clone();
        }
    }

    /// Resolve a review thread (by its GraphQL node id).
    pub async fn resolve_thread(&self, thread_id: &str) -> Result<(), GitHubError> {
        self.graphql(RESOLVE, json!({ "threadId": thread_id }))
            .await
            .map(|_| ())
    }
}
