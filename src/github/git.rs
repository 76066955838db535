//! Git over HTTPS with an installation token. The token travels in an `http.extraHeader`
//! given through git's environment config (`GIT_CONFIG_*`): never in a URL, on a command
//! line other users can read, in `.git/config`, or in an error message.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("git {action} failed: {message}")]
pub struct GitError {
    pub action: String,
    pub message: String,
}

/// A checkout the bot works in.
pub struct Checkout {
    pub dir: PathBuf,
    remote: String,
    auth_header: String,
}

/// Who commits: the app's bot account.
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// GitHub's noreply address for an app's bot user.
    /// Without the bot user's id (0) the address still names the bot, unlinked.
    pub fn app_bot(app_slug: &str, bot_user_id: u64) -> Author {
        let email = if bot_user_id == 0 {
            format!("{app_slug}[bot]@users.noreply.github.com")
        } else {
            format!("{bot_user_id}+{app_slug}[bot]@users.noreply.github.com")
        };
        Author {
            name: format!("{app_slug}[bot]"),
            email,
        }
    }
}

/// What git sends for the token (`base64("x-access-token:TOKEN")`): a secret derived from
/// it, which a front door that prints to a shared log must mask too (`::add-mask::`).
pub fn basic_credential(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
}

fn basic(token: &str) -> String {
    format!("Authorization: Basic {}", basic_credential(token))
}

impl Checkout {
    fn git(&self) -> Command {
        let mut c = Command::new("git");
        c.current_dir(&self.dir)
            .stdin(Stdio::null())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", &self.auth_header)
            .kill_on_drop(true);
        c
    }

    async fn run(&self, action: &str, args: &[&str]) -> Result<String, GitError> {
        let out = self.git().args(args).output().await.map_err(|e| GitError {
            action: action.into(),
            message: e.to_string(),
        })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            return Err(GitError {
                action: action.into(),
                message: crate::scrub::scrub(text.trim()).replace('\n', " "),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A shallow clone of `branch` from `remote` (an https URL without credentials).
    pub async fn clone(
        remote: &str,
        token: &str,
        branch: &str,
        dest: &Path,
    ) -> Result<Checkout, GitError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let co = Checkout {
            dir: parent.to_path_buf(),
            remote: remote.to_string(),
            auth_header: basic(token),
        };
        let dest_s = dest.display().to_string();
        co.run(
            "clone",
            &[
                "clone", "--quiet", "--depth", "1", "--branch", branch, "--", remote, &dest_s,
            ],
        )
        .await?;
        Ok(Checkout {
            dir: dest.to_path_buf(),
            ..co
        })
    }

    /// Fetch `branch` (if it exists on the remote) and check it out, else create it here.
    pub async fn switch_to(&self, branch: &str) -> Result<(), GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        let exists = self
            .run(
                "fetch",
                &["fetch", "--quiet", "--depth", "50", "origin", &refspec],
            )
            .await
            .is_ok();
        if exists {
            let start = format!("origin/{branch}");
            self.run("checkout", &["checkout", "--quiet", "-B", branch, &start])
                .await?;
        } else {
            self.run("checkout", &["checkout", "--quiet", "-b", branch])
                .await?;
        }
        Ok(())
    }

    /// Check out a pull request's head as GitHub publishes it (`refs/pull/N/head`, which
    /// also holds fork PRs), detached. Nothing of it is run: reviews use read-only tools.
    pub async fn checkout_pull(&self, number: u64, head_ref: &str) -> Result<(), GitError> {
        let pull = format!("+refs/pull/{number}/head:refs/remotes/pull/{number}");
        let target = if self
            .run(
                "fetch",
                &["fetch", "--quiet", "--depth", "50", "origin", &pull],
            )
            .await
            .is_ok()
        {
            format!("refs/remotes/pull/{number}")
        } else {
            let branch = format!("+refs/heads/{head_ref}:refs/remotes/origin/{head_ref}");
            self.run(
                "fetch",
                &["fetch", "--quiet", "--depth", "50", "origin", &branch],
            )
            .await?;
            format!("refs/remotes/origin/{head_ref}")
        };
        self.run("checkout", &["checkout", "--quiet", "--detach", &target])
            .await
            .map(|_| ())
    }

    /// [`Checkout::checkout_pull`], then the commit `sha` of it when the fetched history has
    /// it (a push after the job read the head moves the ref on): the files match the head the
    /// review is posted on. `false` when only the newer head could be checked out.
    pub async fn checkout_pull_at(
        &self,
        number: u64,
        head_ref: &str,
        sha: &str,
    ) -> Result<bool, GitError> {
        self.checkout_pull(number, head_ref).await?;
        if !sha.chars().all(|c| c.is_ascii_hexdigit()) || sha.len() < 7 {
            return Ok(false);
        }
        Ok(self
            .run("checkout", &["checkout", "--quiet", "--detach", sha])
            .await
            .is_ok())
    }

    /// The diff `from..to` as `git diff` prints it (renames as a deletion and an addition,
    /// paths unquoted), fetching either commit the shallow history lacks.
    pub async fn diff(&self, from: &str, to: &str) -> Result<String, GitError> {
        for sha in [from, to] {
            if sha.len() < 7 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(GitError {
                    action: "diff".into(),
                    message: format!("not a commit id: {sha:?}"),
                });
            }
            let have = format!("{sha}^{{commit}}");
            if self
                .run("cat-file", &["cat-file", "-e", &have])
                .await
                .is_err()
            {
                self.run(
                    "fetch",
                    &["fetch", "--quiet", "--depth", "1", "origin", sha],
                )
                .await?;
            }
        }
        self.run(
            "diff",
            &[
                "-c",
                "core.quotePath=false",
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--no-renames",
                from,
                to,
            ],
        )
        .await
    }

    /// Commit everything (honouring .gitignore); `false` when there was nothing to commit.
    /// A file being committed that holds a secret this process has (an API key, a token,
    /// in any of its encodings) has it replaced by `[redacted]` first: nothing the agents
    /// write can carry one out.
    pub async fn commit_all(&self, message: &str, author: &Author) -> Result<bool, GitError> {
        self.run("add", &["add", "-A"]).await?;
        let staged = self
            .run(
                "diff",
                &["diff", "--cached", "--name-only", "-z", "--diff-filter=AM"],
            )
            .await?;
        let mut redacted = Vec::new();
        for path in staged.split('\0').filter(|p| !p.is_empty()) {
            let file = self.dir.join(path);
            // Past 8 MiB a file is not the agents' prose; text only (binary is left).
            let small = std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() <= 8 << 20);
            let Some(text) = small.then(|| std::fs::read_to_string(&file).ok()).flatten() else {
                continue;
            };
            let clean = crate::scrub::scrub_values(&text);
            if clean != text {
                std::fs::write(&file, clean).map_err(|e| GitError {
                    action: "redact".into(),
                    message: format!("{path}: {e}"),
                })?;
                redacted.push(path.to_string());
            }
        }
        if !redacted.is_empty() {
            tracing::warn!(files = ?redacted, "secrets redacted from files before committing");
            self.run("add", &["add", "-A"]).await?;
        }
        let status = self.run("status", &["status", "--porcelain"]).await?;
        if status.trim().is_empty() {
            return Ok(false);
        }
        let who = format!("{} <{}>", author.name, author.email);
        let message = crate::scrub::scrub(message);
        self.run(
            "commit",
            &[
                "-c",
                &format!("user.name={}", author.name),
                "-c",
                &format!("user.email={}", author.email),
                "commit",
                "--quiet",
                "--no-verify",
                "--author",
                &who,
                "-m",
                &message,
            ],
        )
        .await?;
        Ok(true)
    }

    pub async fn head(&self) -> Result<String, GitError> {
        Ok(self
            .run("rev-parse", &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_string())
    }

    pub async fn push(&self, branch: &str) -> Result<(), GitError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.run("push", &["push", "--quiet", &self.remote, &refspec])
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_basic_auth() {
        assert_eq!(
            basic("ghs_abc"),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX2FiYw=="
        );
    }
}
