//! What a run changed in the working tree, including new untracked files, without touching
//! the user's index or history: the tree is written through a private index file into the
//! repository's object store (or a private one when the directory is not a git repository).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};
use tokio::process::Command;

/// A way to snapshot one working tree.
pub struct TreeWatcher {
    work_tree: PathBuf,
    git_dir: PathBuf,
    /// Holds the private index (and the private object store outside a git repository).
    scratch: tempfile::TempDir,
    /// The user's index, copied so unchanged files need not be hashed again.
    seed_index: Option<PathBuf>,
    /// The working tree is a fresh checkout of HEAD (a job's clone): the first baseline is
    /// HEAD's tree, read from the repository instead of re-reading every file.
    pristine: std::sync::atomic::AtomicBool,
    /// The last snapshot, while nothing that can write has run since
    /// ([`TreeWatcher::invalidate`]).
    last: std::sync::Mutex<Option<Snapshot>>,
}

/// A written tree object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    /// `A`dded, `M`odified, `D`eleted.
    pub status: char,
}

impl TreeWatcher {
    pub async fn new(work_tree: &Path) -> anyhow::Result<TreeWatcher> {
        let scratch = tempfile::tempdir().context("creating a scratch directory")?;
        let probe = Command::new("git")
            .arg("-C")
            .arg(work_tree)
            .args([
                "rev-parse",
                "--absolute-git-dir",
                "--show-toplevel",
                "--show-prefix",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running git (is it installed?)")?;
        let text = String::from_utf8_lossy(&probe.stdout).to_string();
        let mut lines = text.lines();
        let (dir, top, prefix) = (lines.next(), lines.next(), lines.next().unwrap_or(""));
        // Only a repository's top level uses its object store. A subdirectory (or a
        // directory inside someone else's repository, perhaps ignored there) gets a private
        // store, so paths stay relative to what the run works on and the parent's
        // .gitignore cannot hide its files.
        let (git_dir, top, seed_index) =
            match (probe.status.success() && prefix.is_empty(), dir, top) {
                (true, Some(dir), Some(top)) => {
                    let dir = PathBuf::from(dir);
                    let index = dir.join("index");
                    (dir, PathBuf::from(top), index.exists().then_some(index))
                }
                _ => {
                    let dir = scratch.path().join("git");
                    let init = Command::new("git")
                        .args(["init", "-q", "--bare"])
                        .arg(&dir)
                        .stdin(Stdio::null())
                        .output()
                        .await?;
                    if !init.status.success() {
                        bail!(
                            "git init failed: {}",
                            String::from_utf8_lossy(&init.stderr).trim()
                        );
                    }
                    (dir, work_tree.to_path_buf(), None)
                }
            };
        Ok(TreeWatcher {
            work_tree: top,
            git_dir,
            scratch,
            seed_index,
            pristine: false.into(),
            last: std::sync::Mutex::new(None),
        })
    }

    /// Something that may write to the tree is about to run: the last snapshot is stale.
    pub fn invalidate(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The tree as it is now: the last snapshot while nothing has written since, else a new
    /// one. The end of a run that the gate has just looked at is then the tree the gate saw.
    pub async fn current(&self) -> anyhow::Result<Snapshot> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match last {
            Some(s) => Ok(s),
            None => self.snapshot().await,
        }
    }

    /// Whether the working tree is a fresh checkout of HEAD: see [`TreeWatcher::baseline`].
    pub fn set_pristine(&self, pristine: bool) {
        self.pristine
            .store(pristine, std::sync::atomic::Ordering::Relaxed);
    }

    /// The snapshot a run starts from: on a tree declared pristine, the first time, HEAD's
    /// tree (one cheap `rev-parse`: what is committed is what the checkout holds); otherwise,
    /// and if HEAD cannot be read, a [`TreeWatcher::snapshot`].
    pub async fn baseline(&self) -> anyhow::Result<Snapshot> {
        if self
            .pristine
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            if let Ok(tree) = self.run(&["rev-parse", "--verify", "HEAD^{tree}"]).await {
                return Ok(Snapshot(tree.trim().to_string()));
            }
        }
        self.snapshot().await
    }

    fn git(&self) -> Command {
        let mut c = Command::new("git");
        c.arg("--git-dir")
            .arg(&self.git_dir)
            .arg("--work-tree")
            .arg(&self.work_tree)
            // A repository's own config must not run programs of its choosing here.
            .args([
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .env("GIT_INDEX_FILE", self.scratch.path().join("index"))
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .current_dir(&self.work_tree)
            .stdin(Stdio::null());
        c
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.git().args(args).output().await?;
        if !out.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Write the working tree as it is now (honouring .gitignore) as a tree object.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let index = self.scratch.path().join("index");
        if let Some(seed) = &self.seed_index {
            if !index.exists() {
                // Only a speed-up; a failed copy just means hashing every file.
                let _ = tokio::fs::copy(seed, &index).await;
            }
        }
        // Stale from here on until this snapshot is written: a write that races it must not
        // leave an older snapshot looking current.
        self.invalidate();
        self.run(&["add", "-A", "--", "."]).await?;
        let tree = Snapshot(self.run(&["write-tree"]).await?.trim().to_string());
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(tree.clone());
        Ok(tree)
    }

    pub async fn changed(
        &self,
        from: &Snapshot,
        to: &Snapshot,
    ) -> anyhow::Result<Vec<ChangedFile>> {
        let out = self
            .run(&[
                "diff-tree",
                "-z",
                "-r",
                "--no-renames",
                "--name-status",
                &from.0,
                &to.0,
            ])
            .await?;
        // With -z git neither quotes nor escapes paths: `STATUS\0PATH\0` pairs.
        let mut fields = out.split('\0').filter(|f| !f.is_empty());
        let mut changed = Vec::new();
        while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
            changed.push(ChangedFile {
                path: path.to_string(),
                status: status.chars().next().unwrap_or('M'),
            });
        }
        Ok(changed)
    }

    /// A unified diff between two snapshots.
    pub async fn diff(&self, from: &Snapshot, to: &Snapshot) -> anyhow::Result<String> {
        self.run(&[
            "diff-tree",
            "-r",
            "-p",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            &from.0,
            &to.0,
        ])
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    #[tokio::test]
    async fn a_pristine_checkouts_first_baseline_is_heads_tree_and_later_ones_read_the_files() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "one"]);
        let w = TreeWatcher::new(dir.path()).await.unwrap();
        w.set_pristine(true);
        let base = w.baseline().await.unwrap();
        std::fs::write(dir.path().join("a.txt"), "b\n").unwrap();
        let end = w.snapshot().await.unwrap();
        assert_eq!(
            w.changed(&base, &end).await.unwrap(),
            vec![ChangedFile {
                path: "a.txt".into(),
                status: 'M'
            }]
        );
        // The next run (interactive) starts from the files as they are, not from HEAD.
        assert_eq!(w.baseline().await.unwrap(), end);
    }

    #[tokio::test]
    async fn the_current_tree_is_the_last_snapshot_until_something_may_have_written() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
        let w = TreeWatcher::new(dir.path()).await.unwrap();
        let seen = w.snapshot().await.unwrap();
        std::fs::write(dir.path().join("a.txt"), "b\n").unwrap();
        // Nothing the run controls has written: the tree the gate saw is the run's end.
        assert_eq!(w.current().await.unwrap(), seen);
        w.invalidate();
        let now = w.current().await.unwrap();
        assert_ne!(now, seen);
        assert_eq!(w.changed(&seen, &now).await.unwrap().len(), 1);
    }

    async fn changes(dir: &Path, edit: impl FnOnce()) -> Vec<ChangedFile> {
        let w = TreeWatcher::new(dir).await.unwrap();
        let a = w.snapshot().await.unwrap();
        edit();
        let b = w.snapshot().await.unwrap();
        w.changed(&a, &b).await.unwrap()
    }

    #[tokio::test]
    async fn paths_are_relative_to_a_subdirectory() {
        let top = tempfile::tempdir().unwrap();
        git(top.path(), &["init", "-q"]);
        let svc = top.path().join("svc");
        std::fs::create_dir_all(&svc).unwrap();
        std::fs::write(svc.join("README.md"), "x").unwrap();
        git(top.path(), &["add", "-A"]);
        git(top.path(), &["commit", "-qm", "i"]);
        let c = changes(&svc, || {
            std::fs::create_dir_all(svc.join(".github/workflows")).unwrap();
            std::fs::write(svc.join(".github/workflows/ci.yml"), "on: push").unwrap();
        })
        .await;
        assert_eq!(
            c,
            vec![ChangedFile {
                path: ".github/workflows/ci.yml".into(),
                status: 'A'
            }]
        );
    }

    #[tokio::test]
    async fn a_parent_that_ignores_everything_hides_nothing() {
        let home = tempfile::tempdir().unwrap();
        git(home.path(), &["init", "-q"]);
        std::fs::write(home.path().join(".gitignore"), "*\n").unwrap();
        let proj = home.path().join("proj");
        std::fs::create_dir_all(&proj).unwrap();
        let c = changes(&proj, || {
            std::fs::write(proj.join("a.rs"), "fn a() {}").unwrap()
        })
        .await;
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].path, "a.rs");
    }

    #[tokio::test]
    async fn non_ascii_names_are_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        let d = dir.path().to_path_buf();
        let c = changes(&d, || {
            std::fs::create_dir_all(d.join(".github/workflows")).unwrap();
            std::fs::write(d.join(".github/workflows/déploy.yml"), "x").unwrap();
        })
        .await;
        assert_eq!(c[0].path, ".github/workflows/déploy.yml");
    }
}
