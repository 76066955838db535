//! The permissions each kind of job asks its installation token for.

use serde_json::Value;

/// What a job's installation token may do: GitHub's fine-grained permissions, the fewest
/// each kind of job needs. None of them carries `workflows`, so no token this product holds
/// can change a repository's CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read the code and configuration, comment and react: intake, `ask`, `help`, `cost`,
    /// denials and failure reports.
    Triage,
    /// Read the code; review pull requests, post check runs, comment.
    Review,
    /// Push branches and open or update pull requests: implement, approve, revise, refactor.
    Write,
}

impl Access {
    /// The `permissions` of `POST /app/installations/{id}/access_tokens`.
    pub fn permissions(self) -> Value {
        match self {
            Access::Triage => serde_json::json!({
                "contents": "read", "issues": "write", "pull_requests": "read", "metadata": "read",
            }),
            Access::Review => serde_json::json!({
                "contents": "read", "issues": "write", "pull_requests": "write", "checks": "write",
                "metadata": "read",
            }),
            Access::Write => serde_json::json!({
                "contents": "write", "issues": "write", "pull_requests": "write", "metadata": "read",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_access_asks_for_the_least_and_never_workflows() {
        for a in [Access::Triage, Access::Review, Access::Write] {
            let p = a.permissions();
            assert!(
                p.get("workflows").is_none() && p.get("administration").is_none(),
                "{p}"
            );
            assert_eq!(p["metadata"], "read");
        }
        assert_eq!(Access::Triage.permissions()["contents"], "read");
        assert_eq!(Access::Review.permissions()["contents"], "read");
        assert_eq!(Access::Review.permissions()["checks"], "write");
        assert_eq!(Access::Write.permissions()["contents"], "write");
        assert!(Access::Write.permissions().get("checks").is_none());
    }
}
