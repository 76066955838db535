//! Tools the agents use, confined to the workspace.
//!
//! Every failure a model can cause (bad JSON, a refused path, a missing file, a failing
//! command) comes back as a [`ToolOutcome`] with `is_error: true` and one clear line, so the
//! model can recover; nothing here panics or ends the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::llm::ToolSpec;

mod files;
mod registry;
mod sandbox;
mod search;
mod truncate;
pub mod workspace;

use registry::{Needs, Tool};
pub use sandbox::SandboxStatus;
pub use truncate::truncate_head_tail;
pub use workspace::{PathError, Workspace};

/// What the tools may do to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// list_files, read_file, search.
    ReadOnly,
    /// Also write_file, edit_file, run_command.
    ReadWrite,
    /// write_file and edit_file, but no run_command: untrusted-context mode.
    ReadWriteNoCommands,
}

/// How `run_command` isolates commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// bubblewrap; if it cannot work here, commands are refused.
    Bubblewrap,
    /// Commands run bare (still with an empty environment, a timeout and output caps). Only
    /// when the local user explicitly configured `sandbox: none`.
    None,
}

#[derive(Debug, Clone)]
pub struct ToolboxOptions {
    pub access: Access,
    pub sandbox: SandboxMode,
    pub command_timeout: Duration,
    /// Cap on what read_file returns (head and tail kept).
    pub max_read_bytes: usize,
    /// Cap on what run_command (per call, both streams together) and search return.
    pub max_output_bytes: usize,
    /// The bubblewrap binary; injectable so a missing sandbox can be tested.
    pub bwrap_path: PathBuf,
    /// Directories appended to the commands' PATH (e.g. a toolchain's bin directory), from
    /// explicit configuration only; our own PATH is never passed through.
    pub extra_path: Vec<PathBuf>,
    /// Variables set for commands (e.g. `CARGO_HOME`), from explicit configuration only.
    /// Never put secrets here: commands run model-written code.
    pub extra_env: Vec<(String, String)>,
    /// Paths made visible (read-only) inside the sandbox although they lie under a hidden
    /// directory (`/root`, `/home`, `/run`), e.g. `~/.rustup` and `~/.cargo/bin`. Explicit
    /// configuration only; whatever is listed is readable by model-written commands.
    pub extra_ro_paths: Vec<PathBuf>,
}

impl Default for ToolboxOptions {
    fn default() -> Self {
        ToolboxOptions {
            access: Access::ReadWrite,
            sandbox: SandboxMode::Bubblewrap,
            command_timeout: Duration::from_secs(120),
            max_read_bytes: 100 * 1024,
            max_output_bytes: 30 * 1024,
            bwrap_path: sandbox::default_bwrap(),
            extra_path: Vec::new(),
            extra_env: Vec::new(),
            extra_ro_paths: Vec::new(),
        }
    }
}

/// The answer to one tool call, for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutcome {
    fn ok(content: String) -> Self {
        ToolOutcome {
            content,
            is_error: false,
        }
    }
    fn error(content: String) -> Self {
        ToolOutcome {
            content,
            is_error: true,
        }
    }
}

/// An error meant for the model: one line saying what went wrong.
#[derive(Debug)]
pub(crate) struct ToolError(pub String);

impl From<PathError> for ToolError {
    fn from(e: PathError) -> Self {
        ToolError(e.to_string())
    }
}

/// The tools of one job, bound to one workspace.
#[derive(Debug)]
pub struct Toolbox {
    ws: Workspace,
    opts: ToolboxOptions,
    sandbox: SandboxStatus,
    /// HOME for bare commands: a private directory, removed with the toolbox.
    bare_home: Option<PrivateDir>,
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> anyhow::Result<PrivateDir> {
        use rand::Rng;
        let name = format!(
            "equitr-home-{}-{:016x}",
            std::process::id(),
            rand::thread_rng().gen::<u64>()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Toolbox {
    /// `root` is canonicalised and must be a directory. In Bubblewrap mode with write access,
    /// bubblewrap is probed once here; if it does not work, commands will be refused (and a
    /// warning is logged now, once).
    pub fn new(root: &Path, opts: ToolboxOptions) -> anyhow::Result<Toolbox> {
        let ws = Workspace::new(root)?;
        let sandbox = match opts.sandbox {
            SandboxMode::None => SandboxStatus::Disabled,
            SandboxMode::Bubblewrap => sandbox::probe(&opts.bwrap_path),
        };
        // Warn only where commands are offered; a read-only toolbox never runs any.
        if opts.access == Access::ReadWrite {
            if let Some(msg) = sandbox.message() {
                tracing::warn!(workspace = %ws.root().display(), "{msg}");
            }
        }
        let bare_home = match (opts.access, opts.sandbox) {
            (Access::ReadWrite, SandboxMode::None) => Some(PrivateDir::create()?),
            _ => None,
        };
        Ok(Toolbox {
            ws,
            opts,
            sandbox,
            bare_home,
        })
    }

    pub fn root(&self) -> &Path {
        self.ws.root()
    }

    /// Whether any of its tools may change the workspace (write, edit, run a command).
    pub fn writes(&self) -> bool {
        self.opts.access != Access::ReadOnly
    }

    pub fn sandbox_status(&self) -> SandboxStatus {
        self.sandbox.clone()
    }

    /// The tools this toolbox's access allows, in the registry's order.
    fn tools(&self) -> impl Iterator<Item = &'static dyn Tool> + '_ {
        registry::TOOLS
            .iter()
            .copied()
            .filter(|t| t.needs().allowed(self.opts.access))
    }

    fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tools().map(|t| t.name())
    }

    pub fn handles(&self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools()
            .map(|t| {
                let (description, parameters) = t.spec(&self.opts);
                ToolSpec {
                    name: t.name().to_owned(),
                    description,
                    parameters,
                }
            })
            .collect()
    }

    /// Runs one tool call. `arguments` is the model's raw JSON text.
    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        use tracing::Instrument;
        self.call_inner(name, arguments)
            .instrument(tracing::debug_span!("tool", name))
            .await
    }

    async fn call_inner(&self, name: &str, arguments: &str) -> ToolOutcome {
        let Some(tool) = self.tools().find(|t| t.name() == name) else {
            return ToolOutcome::error(self.refusal(name));
        };
        match tool.call(self, arguments).await {
            Ok(outcome) => outcome,
            Err(ToolError(msg)) => {
                // Messages quote the model's own input (paths, patterns); keep them one line.
                let msg = msg.replace('\r', "\\r").replace('\n', "\\n");
                tracing::debug!(tool = name, error = %msg, "tool call refused or failed");
                ToolOutcome::error(msg)
            }
        }
    }

    /// Why a tool this toolbox does not offer was refused.
    fn refusal(&self, name: &str) -> String {
        let known = self.names().collect::<Vec<_>>().join(", ");
        match registry::TOOLS.iter().find(|t| t.name() == name) {
            Some(t)
                if t.needs() == Needs::Commands
                    && self.opts.access == Access::ReadWriteNoCommands =>
            {
                format!(
                    "`run_command` is off: this job's context has text from someone without write \
                 access (untrusted-context mode); available: {known}"
                )
            }
            Some(_) => {
                format!("tool `{name}` is not available in read-only mode; available: {known}")
            }
            None => format!("unknown tool `{name}`; available: {known}"),
        }
    }

    /// Parses the arguments and runs a filesystem tool off the async threads (a search over a
    /// large tree takes a while).
    pub(crate) async fn blocking<A, F>(&self, arguments: &str, f: F) -> Result<String, ToolError>
    where
        A: DeserializeOwned + Send + 'static,
        F: FnOnce(&Workspace, A, &ToolboxOptions) -> Result<String, ToolError> + Send + 'static,
    {
        let args: A = parse_args(arguments)?;
        let ws = self.ws.clone();
        let opts = self.opts.clone();
        match tokio::task::spawn_blocking(move || f(&ws, args, &opts)).await {
            Ok(r) => r,
            Err(e) => Err(ToolError(format!("the tool failed internally: {e}"))),
        }
    }

    pub(crate) async fn run_command(&self, arguments: &str) -> ToolOutcome {
        #[derive(serde::Deserialize)]
        struct Args {
            command: String,
        }
        let args: Args = match parse_args(arguments) {
            Ok(a) => a,
            Err(ToolError(msg)) => return ToolOutcome::error(msg),
        };
        if args.command.trim().is_empty() {
            return ToolOutcome::error("`command` is empty".to_owned());
        }
        let bwrap = match (&self.sandbox, self.opts.sandbox) {
            (_, SandboxMode::None) => None,
            (SandboxStatus::Available, SandboxMode::Bubblewrap) => {
                Some(self.opts.bwrap_path.as_path())
            }
            (SandboxStatus::Unavailable { reason }, _) => {
                return ToolOutcome::error(sandbox::unavailable_message(reason))
            }
            (SandboxStatus::Disabled, SandboxMode::Bubblewrap) => {
                return ToolOutcome::error("commands are disabled".to_owned())
            }
        };
        let r = sandbox::run(sandbox::ExecRequest {
            command: &args.command,
            workspace: self.ws.root(),
            bwrap,
            timeout: self.opts.command_timeout,
            max_output_bytes: self.opts.max_output_bytes,
            bare_home: self
                .bare_home
                .as_ref()
                .map_or(self.ws.root(), |d| d.0.as_path()),
            extra_path: &self.opts.extra_path,
            extra_env: &self.opts.extra_env,
            extra_ro_paths: &self.opts.extra_ro_paths,
        })
        .await;
        ToolOutcome {
            content: r.content,
            is_error: r.is_error,
        }
    }
}

pub(crate) fn parse_args<A: DeserializeOwned>(arguments: &str) -> Result<A, ToolError> {
    // Some models send an empty string for a call without arguments.
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        ToolError(format!("invalid arguments: {msg}"))
    })
}
