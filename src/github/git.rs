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

    /// [`Checkout::clone`] of `default_branch`, then `branch` checked out: continued from the
    /// remote when it is there, else created. Whether it is there is asked (`ls-remote`, one
    /// small request) while the clone runs, so a new branch costs no second fetch.
    pub async fn clone_onto(
        remote: &str,
        token: &str,
        default_branch: &str,
        branch: &str,
        dest: &Path,
    ) -> Result<Checkout, GitError> {
        let probe = Checkout {
            dir: dest.parent().unwrap_or(Path::new(".")).to_path_buf(),
            remote: remote.to_string(),
            auth_header: basic(token),
        };
        let refname = format!("refs/heads/{branch}");
        // `--`: the URL comes from GitHub's API and is never read as an option.
        let list = ["ls-remote", "--heads", "--", remote, refname.as_str()];
        let (listed, cloned) = tokio::join!(
            probe.run("ls-remote", &list),
            Checkout::clone(remote, token, default_branch, dest)
        );
        let checkout = cloned?;
        // `REF\tNAME` lines; the pattern matches path suffixes, so compare the whole name.
        let exists = listed?
            .lines()
            .any(|l| l.split('\t').nth(1) == Some(refname.as_str()));
        checkout.switch(branch, exists).await?;
        Ok(checkout)
    }

    /// Fetch `branch` (if it exists on the remote) and check it out, else create it here.
    pub async fn switch_to(&self, branch: &str) -> Result<(), GitError> {
        self.switch(branch, true).await
    }

    /// Check out `branch`: fetched from the remote when `maybe_there` and the fetch finds it,
    /// else created here.
    async fn switch(&self, branch: &str, maybe_there: bool) -> Result<(), GitError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        let exists = maybe_there
            && self
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
        // `STATUS\0PATH\0` per staged path. Without `--no-renames` a moved file that was also
        // edited would be an `R` and escape the scan below.
        let staged_list = ["diff", "--cached", "--name-status", "--no-renames", "-z"];
        let staged = self.run("diff", &staged_list).await?;
        if staged.is_empty() {
            return Ok(false);
        }
        let mut fields = staged.split('\0').filter(|f| !f.is_empty());
        let mut written = Vec::new();
        while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
            if status != "D" {
                written.push(path);
            }
        }
        let mut redacted = Vec::new();
        for path in written {
            let file = self.dir.join(path);
            if redact_file(&file).map_err(|e| GitError {
                action: "redact".into(),
                message: format!("{path}: {e}"),
            })? {
                redacted.push(path.to_string());
            }
        }
        if !redacted.is_empty() {
            tracing::warn!(files = ?redacted, "secrets redacted from files before committing");
            self.run("add", &["add", "-A"]).await?;
            // The redaction may have put a file back as it was.
            if self.run("diff", &staged_list).await?.is_empty() {
                return Ok(false);
            }
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

/// Replaces the process's secrets in a file about to be committed; `true` when it held one.
/// A symbolic link is committed as the text of its target and is never followed (rewriting
/// through it would write outside the checkout): one whose target holds a secret is made
/// again pointing at the redacted text. Past 8 MiB a file is not the agents' prose, and only
/// text is read (binary is left).
fn redact_file(file: &Path) -> std::io::Result<bool> {
    let Ok(meta) = std::fs::symlink_metadata(file) else {
        return Ok(false);
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(file)?;
        let text = target.to_string_lossy();
        let clean = crate::scrub::scrub_values(&text);
        if clean == text {
            return Ok(false);
        }
        std::fs::remove_file(file)?;
        std::os::unix::fs::symlink(clean, file)?;
        return Ok(true);
    }
    if !meta.file_type().is_file() || meta.len() > 8 << 20 {
        return Ok(false);
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(false);
    };
    let clean = crate::scrub::scrub_values(&text);
    if clean == text {
        return Ok(false);
    }
    std::fs::write(file, clean)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@e"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A repository with `files` committed, and the checkout over it.
    fn committed(files: &[(&str, &str)]) -> (tempfile::TempDir, Checkout) {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        for (path, text) in files {
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "one"]);
        let co = Checkout {
            dir: dir.path().to_path_buf(),
            remote: String::new(),
            auth_header: String::new(),
        };
        (dir, co)
    }

    #[tokio::test]
    async fn a_secret_in_a_moved_and_edited_file_is_redacted_before_the_commit() {
        let secret = "sk-moved-file-secret-0123456789abcdef";
        crate::scrub::register_secret(secret);
        let body = "line of text that stays the same\n".repeat(20);
        let (dir, co) = committed(&[("a.txt", &body)]);
        // Git sees a rename: most of the content is the same.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        std::fs::write(dir.path().join("b.txt"), format!("{body}key={secret}\n")).unwrap();
        let author = Author::app_bot("app", 0);
        assert!(co.commit_all("move", &author).await.unwrap());
        let committed = git(dir.path(), &["show", "HEAD:b.txt"]);
        assert!(committed.ends_with("key=[redacted]\n"), "{committed}");
        assert!(!git(dir.path(), &["log", "-p"]).contains(secret));
        // Nothing left: a second commit has nothing to commit.
        assert!(!co.commit_all("again", &author).await.unwrap());
    }

    #[tokio::test]
    async fn a_link_is_not_followed_and_a_secret_in_its_target_is_redacted() {
        let secret = "sk-link-target-secret-0123456789abcdef";
        crate::scrub::register_secret(secret);
        let outside = tempfile::tempdir().unwrap();
        let env = outside.path().join("env");
        std::fs::write(&env, format!("KEY={secret}\n")).unwrap();
        let (dir, co) = committed(&[("a.txt", "a\n")]);
        std::os::unix::fs::symlink(&env, dir.path().join("leak")).unwrap();
        std::os::unix::fs::symlink(secret, dir.path().join("named")).unwrap();
        assert!(co
            .commit_all("links", &Author::app_bot("app", 0))
            .await
            .unwrap());
        // The file outside the checkout is untouched.
        assert_eq!(
            std::fs::read_to_string(&env).unwrap(),
            format!("KEY={secret}\n")
        );
        assert_eq!(
            git(dir.path(), &["cat-file", "-p", "HEAD:named"]),
            "[redacted]"
        );
        assert!(!git(dir.path(), &["log", "-p"]).contains(secret));
    }

    #[test]
    fn the_header_is_basic_auth() {
        assert_eq!(
            basic("ghs_abc"),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX2FiYw=="
        );
    }
}
