//! GitHub: webhook verification and parsing into domain events, and the command parser.
//! Octocrab's models stop at this boundary; the rest of the code speaks these types.

use std::fmt;

mod access;
mod answers;
pub mod api;
pub mod client;
pub mod event;
pub mod git;
mod links;
pub mod outbound;
pub mod webhook;

/// `owner/name`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

impl RepoName {
    pub fn parse(full: &str) -> Option<RepoName> {
        let (owner, name) = full.split_once('/')?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (ok(owner) && ok(name) && name != "." && name != "..").then(|| RepoName {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct InstallationId(pub u64);

/// An issue's title and body as a delivery carried them, and who wrote it: the text of a
/// task is what it was when a writer asked for the work, not what it became afterwards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssueText {
    pub number: u64,
    pub title: String,
    pub body: String,
    /// The issue's author (`None` when the delivery did not say).
    pub author: Option<String>,
}

/// Who did something on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    pub login: String,
    pub id: u64,
    /// `type: Bot` — bots (this app included) never trigger anything.
    pub is_bot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        assert_eq!(
            RepoName::parse("Codertocat/Hello-World")
                .unwrap()
                .to_string(),
            "Codertocat/Hello-World"
        );
        for bad in ["", "a", "a/", "/b", "a/b/c", "a/..", "a b/c"] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
    }
}
