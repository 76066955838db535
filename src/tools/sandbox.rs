//! `run_command`: a shell command under bubblewrap, with codex-rs' exec discipline.
//!
//! Inside the sandbox the whole filesystem is read-only except the workspace (and a fresh
//! `/tmp`), the workspace's `.git` is read-only, there is no network and no inherited
//! environment. Outside it, the bwrap process itself also gets an empty environment, no
//! stdin, its own process group and a timeout that kills the whole tree.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::truncate::{HeadTail, StreamCapture};

/// The only directories commands find programs in. Language toolchains installed system-wide
/// in the usual container places are added when they exist; nothing from the caller's own
/// `PATH` (or `$HOME`) leaks in.
const BASE_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];
const OPTIONAL_PATH: &[&str] = &["/usr/local/cargo/bin", "/usr/local/go/bin"];
/// Hidden inside the sandbox behind an empty tmpfs.
const MASKED_DIRS: &[&str] = &["/root", "/home", "/run"];

/// Whether commands can run, as found by the probe at `Toolbox::new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxStatus {
    /// bubblewrap works: commands run sandboxed.
    Available,
    /// Bubblewrap mode was asked for but cannot work here; commands are refused.
    Unavailable { reason: String },
    /// `sandbox: none` was configured: commands run bare (still with an empty environment,
    /// a timeout and output caps).
    Disabled,
}

impl SandboxStatus {
    /// A line for the user (`None` when all is well).
    pub fn message(&self) -> Option<String> {
        match self {
            SandboxStatus::Available => None,
            SandboxStatus::Unavailable { reason } => Some(unavailable_message(reason)),
            SandboxStatus::Disabled => {
                Some("commands run WITHOUT a sandbox (`sandbox: none` is configured)".to_owned())
            }
        }
    }
}

pub(crate) fn unavailable_message(reason: &str) -> String {
    format!(
        "commands are disabled: the sandbox (bubblewrap) is not available: {reason}; \
         install bubblewrap or set `sandbox: none` in ~/.equitr/config.yaml"
    )
}

/// Runs `bwrap ... true` once to learn whether namespaces and mounts work here (they often do
/// not in unprivileged containers).
pub(crate) fn probe(bwrap: &Path) -> SandboxStatus {
    let out = std::process::Command::new(bwrap)
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--unshare-all",
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--",
            "true",
        ])
        .env_clear()
        .env("PATH", path_value(&[]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() => SandboxStatus::Available,
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            SandboxStatus::Unavailable {
                reason: format!(
                    "`{}` failed ({}){}",
                    bwrap.display(),
                    o.status,
                    if first.is_empty() {
                        String::new()
                    } else {
                        format!(": {first}")
                    }
                ),
            }
        }
        Err(e) => SandboxStatus::Unavailable {
            reason: format!("cannot start `{}`: {e}", bwrap.display()),
        },
    }
}

pub(crate) struct ExecRequest<'a> {
    pub command: &'a str,
    pub workspace: &'a Path,
    /// `Some(bwrap)` to sandbox, `None` to run bare.
    pub bwrap: Option<&'a Path>,
    pub timeout: Duration,
    pub max_output_bytes: usize,
    /// HOME for bare commands (inside bwrap it is the fresh `/tmp`).
    pub bare_home: &'a Path,
    /// Directories appended to PATH and variables set, both from explicit configuration.
    pub extra_path: &'a [PathBuf],
    pub extra_env: &'a [(String, String)],
    pub extra_ro_paths: &'a [PathBuf],
}

pub(crate) struct ExecResult {
    pub content: String,
    pub is_error: bool,
}

fn path_value(extra: &[PathBuf]) -> String {
    let mut dirs: Vec<String> = BASE_PATH.iter().map(|d| (*d).to_owned()).collect();
    dirs.extend(
        OPTIONAL_PATH
            .iter()
            .filter(|d| Path::new(d).is_dir())
            .map(|d| (*d).to_owned()),
    );
    dirs.extend(extra.iter().map(|d| d.to_string_lossy().into_owned()));
    dirs.join(":")
}

fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

fn build_command(req: &ExecRequest<'_>) -> Command {
    let ws = req.workspace.as_os_str();
    let path = path_value(req.extra_path);
    let mut cmd = match req.bwrap {
        Some(bwrap) => {
            let mut c = Command::new(bwrap);
            c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
            c.args(["--tmpfs", "/tmp"]);
            // The read-only root still lets a command *read* and *connect*: hide the users'
            // homes (dotfiles, credentials, the service's own config) and /run (docker,
            // postgres and dbus sockets, which --unshare-net does not cover).
            for masked in MASKED_DIRS {
                if Path::new(masked).is_dir() {
                    c.args(["--tmpfs", masked]);
                }
            }
            // Explicitly configured read-only paths (toolchains under a masked home) come back
            // after the masks.
            for p in req.extra_ro_paths {
                if p.exists() {
                    c.arg("--ro-bind").arg(p).arg(p);
                }
            }
            // After the masks, so a workspace under /tmp or a home is visible again.
            c.arg("--bind").arg(ws).arg(ws);
            let git = req.workspace.join(".git");
            // After the writable bind, so it wins.
            if git.exists() {
                c.arg("--ro-bind").arg(&git).arg(&git);
            }
            // A worktree's `.git` is a file naming a git dir elsewhere (and that one names the
            // common dir); they may sit under a hidden home, so bring them back read-only.
            for dir in linked_git_dirs(&git) {
                c.arg("--ro-bind").arg(&dir).arg(&dir);
            }
            c.args(["--unshare-all", "--die-with-parent", "--new-session"]);
            // Run as root, bwrap keeps every capability by default, and CAP_SYS_ADMIN inside
            // the mount namespace is enough to remount `.git` read-write or unmount it.
            c.args(["--cap-drop", "ALL"]);
            c.arg("--chdir").arg(ws);
            c.arg("--clearenv");
            c.args(["--setenv", "PATH", &path]);
            c.args(["--setenv", "HOME", "/tmp"]);
            c.args(["--setenv", "LANG", "C.UTF-8"]);
            c.args(["--setenv", "TMPDIR", "/tmp"]);
            for (k, v) in req.extra_env {
                c.arg("--setenv").arg(k).arg(v);
            }
            c.arg("--").arg(shell()).arg("-c").arg(req.command);
            c
        }
        None => {
            let mut c = Command::new(shell());
            c.arg("-c").arg(req.command);
            c.current_dir(req.workspace);
            c
        }
    };
    // The bwrap process (or the bare shell) inherits nothing from us: no tokens, no keys.
    cmd.env_clear();
    cmd.env("PATH", &path);
    cmd.env("LANG", "C.UTF-8");
    if req.bwrap.is_none() {
        // A private HOME, not ours: no dotfiles with credentials, and caches do not litter
        // the checkout.
        cmd.env("HOME", req.bare_home);
        for (k, v) in req.extra_env {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group so a timeout can kill the whole tree at once.
        .process_group(0);
    cmd
}

async fn capture<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> HeadTail {
    let mut c = StreamCapture::new(cap);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => c.push(&buf[..n]),
        }
    }
    c.finish()
}

struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// For a worktree or submodule checkout: the git dir its `.git` file points to, and that git
/// dir's common dir.
fn linked_git_dirs(dot_git: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !dot_git.is_file() {
        return out;
    }
    let Ok(text) = std::fs::read_to_string(dot_git) else {
        return out;
    };
    let Some(gitdir) = text.lines().find_map(|l| l.strip_prefix("gitdir:")) else {
        return out;
    };
    let base = dot_git.parent().unwrap_or(Path::new("/"));
    let Ok(gitdir) = std::fs::canonicalize(base.join(gitdir.trim())) else {
        return out;
    };
    if let Ok(common) = std::fs::read_to_string(gitdir.join("commondir")) {
        if let Ok(common) = std::fs::canonicalize(gitdir.join(common.trim())) {
            out.push(common);
        }
    }
    // After the common dir, in case the git dir lies inside it (`.git/worktrees/<name>`).
    out.push(gitdir);
    out
}

fn kill_group(pgid: Option<u32>) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        if pid > 0 {
            // SAFETY: kill has no memory effects; a negative pid targets the process group
            // we created for this command.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

pub(crate) async fn run(req: ExecRequest<'_>) -> ExecResult {
    let mut cmd = build_command(&req);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ExecResult {
                content: format!("cannot start the command: {e}"),
                is_error: true,
            }
        }
    };
    let pgid = child.id();
    // Also when this future is dropped mid-way (the job was cancelled): kill_on_drop only
    // reaches the direct child.
    let _group = GroupGuard(pgid);
    let cap = req.max_output_bytes;
    let stdout = child.stdout.take().map(|s| tokio::spawn(capture(s, cap)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(capture(s, cap)));

    let waited = tokio::time::timeout(req.timeout, child.wait()).await;
    // Whatever happened, nothing the command started outlives it. Under bwrap the pid
    // namespace already ends with the command; bare, this is what stops `cmd &`.
    kill_group(pgid);
    let status = match waited {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("waiting for the command failed: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "timed out after {} s; the command and everything it started were killed",
                format_secs(req.timeout)
            ))
        }
    };

    // A process that escaped the group (bare mode, `setsid`) could hold the pipes open
    // forever; don't wait for it.
    let grace = Duration::from_secs(2);
    let out = join_capture(stdout, grace).await;
    let err = join_capture(stderr, grace).await;

    let (header, is_error) = match &status {
        Ok(s) => match s.code() {
            Some(0) => ("exit code: 0".to_owned(), false),
            Some(c) => (format!("exit code: {c}"), true),
            None => {
                use std::os::unix::process::ExitStatusExt;
                (
                    format!("killed by signal {}", s.signal().unwrap_or(0)),
                    true,
                )
            }
        },
        Err(msg) => (msg.clone(), true),
    };
    ExecResult {
        content: format_output(&header, &out, &err, cap),
        is_error,
    }
}

async fn join_capture(h: Option<tokio::task::JoinHandle<HeadTail>>, grace: Duration) -> HeadTail {
    let Some(h) = h else {
        return HeadTail::default();
    };
    let abort = h.abort_handle();
    match tokio::time::timeout(grace, h).await {
        Ok(Ok(ht)) => ht,
        _ => {
            abort.abort();
            HeadTail::whole(
                "[output unavailable: the stream was still held open by a leftover process]",
            )
        }
    }
}

/// Splits the output budget between the two streams: each gets half, and what one does not
/// use goes to the other.
fn format_output(header: &str, out: &HeadTail, err: &HeadTail, cap: usize) -> String {
    let half = cap / 2;
    let out_len = out.kept_len() + out.omitted_bytes;
    let err_len = err.kept_len() + err.omitted_bytes;
    let (out_budget, err_budget) = if out_len + err_len <= cap {
        (out_len, err_len)
    } else if out_len < half {
        (out_len, cap - out_len)
    } else if err_len < half {
        (cap - err_len, err_len)
    } else {
        (half, cap - half)
    };
    let mut s = String::from(header);
    s.push('\n');
    if !out.is_empty() {
        s.push_str("--- stdout ---\n");
        s.push_str(&out.render(out_budget));
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    if !err.is_empty() {
        s.push_str("--- stderr ---\n");
        s.push_str(&err.render(err_budget));
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    if out.is_empty() && err.is_empty() {
        s.push_str("(no output)\n");
    }
    s
}

/// The bubblewrap binary to use by default (found on `PATH` by the OS at spawn time).
pub(crate) fn default_bwrap() -> PathBuf {
    PathBuf::from("bwrap")
}

/// `120` for whole seconds, `0.5` otherwise.
pub(crate) fn format_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.1}", d.as_secs_f64())
    }
}
