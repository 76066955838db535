//! Tools the agents use, confined to the workspace.
//!
//! Every failure a model can cause (bad JSON, a refused path, a missing file, a failing
//! command) comes back as a [`ToolOutcome`] with `is_error: true` and one clear line, so the
//! model can recover; nothing here panics or ends the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::json;

use crate::llm::ToolSpec;

mod files;
mod sandbox;
mod search;
mod truncate;
pub mod workspace;

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

const READ_ONLY_TOOLS: &[&str] = &["list_files", "read_file", "search"];
const WRITE_TOOLS: &[&str] = &["write_file", "edit_file", "run_command"];

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

    pub fn sandbox_status(&self) -> SandboxStatus {
        self.sandbox.clone()
    }

    fn names(&self) -> impl Iterator<Item = &'static str> {
        let writes: &[&str] = match self.opts.access {
            Access::ReadOnly => &[],
            Access::ReadWrite => WRITE_TOOLS,
            Access::ReadWriteNoCommands => &WRITE_TOOLS[..2],
        };
        READ_ONLY_TOOLS.iter().chain(writes.iter()).copied()
    }

    pub fn handles(&self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.names().filter_map(|n| spec(n, &self.opts)).collect()
    }

    /// Runs one tool call. `arguments` is the model's raw JSON text.
    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        use tracing::Instrument;
        self.call_inner(name, arguments)
            .instrument(tracing::debug_span!("tool", name))
            .await
    }

    async fn call_inner(&self, name: &str, arguments: &str) -> ToolOutcome {
        if !self.handles(name) {
            let known = self.names().collect::<Vec<_>>().join(", ");
            let why = if name == "run_command" && self.opts.access == Access::ReadWriteNoCommands {
                format!(
                    "`run_command` is off: this job's context has text from someone without write \
                     access (untrusted-context mode); available: {known}"
                )
            } else if WRITE_TOOLS.contains(&name) {
                format!("tool `{name}` is not available in read-only mode; available: {known}")
            } else {
                format!("unknown tool `{name}`; available: {known}")
            };
            return ToolOutcome::error(why);
        }
        let result = match name {
            "list_files" => {
                self.blocking(arguments, |ws, a, o| {
                    files::list_files(ws, a, o.max_output_bytes)
                })
                .await
            }
            "read_file" => {
                self.blocking(arguments, |ws, a, o| {
                    files::read_file(ws, a, o.max_read_bytes)
                })
                .await
            }
            "search" => {
                self.blocking(arguments, |ws, a, o| {
                    search::search(ws, a, o.max_output_bytes)
                })
                .await
            }
            "write_file" => {
                self.blocking(arguments, |ws, a, _| files::write_file(ws, a))
                    .await
            }
            "edit_file" => {
                self.blocking(arguments, |ws, a, _| files::edit_file(ws, a))
                    .await
            }
            "run_command" => return self.run_command(arguments).await,
            _ => Err(ToolError(format!("unknown tool `{name}`"))),
        };
        match result {
            Ok(content) => ToolOutcome::ok(content),
            Err(ToolError(msg)) => {
                // Messages quote the model's own input (paths, patterns); keep them one line.
                let msg = msg.replace('\r', "\\r").replace('\n', "\\n");
                tracing::debug!(tool = name, error = %msg, "tool call refused or failed");
                ToolOutcome::error(msg)
            }
        }
    }

    /// Parses the arguments and runs a filesystem tool off the async threads (a search over a
    /// large tree takes a while).
    async fn blocking<A, F>(&self, arguments: &str, f: F) -> Result<String, ToolError>
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

    async fn run_command(&self, arguments: &str) -> ToolOutcome {
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

fn parse_args<A: DeserializeOwned>(arguments: &str) -> Result<A, ToolError> {
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

// long: the table of tool descriptions the models read; one entry per tool.
fn spec(name: &str, opts: &ToolboxOptions) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "list_files" => (
            "List files and directories under a path of the repository (directories end with `/`). \
             Honours .gitignore and skips .git. Paths are relative to the repository root."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Directory to list, relative to the repository root. Default \".\"."},
                    "max_depth": {"type": "integer", "minimum": 1, "description": "How many levels deep to list (1 = direct children). Default: unlimited."}
                },
                "additionalProperties": false
            }),
        ),
        "read_file" => (
            format!(
                "Read a text file of the repository. Output longer than {} KiB keeps the start and the end \
                 with a `[… N lines / N bytes omitted …]` marker in between; use start_line/end_line to read \
                 the omitted part. Binary files are refused.",
                opts.max_read_bytes / 1024
            ),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the repository root."},
                    "start_line": {"type": "integer", "minimum": 1, "description": "First line to return (1-based, inclusive)."},
                    "end_line": {"type": "integer", "minimum": 1, "description": "Last line to return (1-based, inclusive)."}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
        ),
        "search" => (
            "Search the repository for a regular expression (Rust regex syntax, like ripgrep; use (?i) for \
             case-insensitive). Honours .gitignore. Prints `path:line:text` for each matching line, in path \
             order, and says how many matches were left out."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "Regular expression to search for."},
                    "path": {"type": "string", "description": "File or directory to search in, relative to the repository root. Default \".\"."},
                    "glob": {"type": "string", "description": "Only search files matching this glob, e.g. \"*.rs\" or \"src/**/*.ts\"; prefix with ! to exclude."}
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
        ),
        "write_file" => (
            "Create or overwrite a file with the given content (parent directories are created). \
             The write is atomic. Files inside .git cannot be written."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the repository root."},
                    "content": {"type": "string", "description": "The complete new content of the file."}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            }),
        ),
        "edit_file" => (
            "Replace one exact occurrence of `old` with `new` in a file. `old` must match the file exactly \
             (whitespace and indentation included) and exactly once; include enough surrounding lines to \
             make it unique. Read the file first."
                .to_owned(),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the repository root."},
                    "old": {"type": "string", "description": "The exact text to replace; must occur exactly once."},
                    "new": {"type": "string", "description": "The replacement text."}
                },
                "required": ["path", "old", "new"],
                "additionalProperties": false
            }),
        ),
        "run_command" => (
            format!(
                "Run a shell command (bash -c) in the repository root and get its exit code, stdout and stderr. \
                 {} It is killed after {} s; long output keeps the start and the end. Do not start servers or \
                 interactive programs.",
                match opts.sandbox {
                    SandboxMode::Bubblewrap => "It runs in a sandbox: no network, no environment variables besides \
                        PATH/HOME/LANG, the repository is writable but .git is read-only, /tmp is a fresh scratch space.",
                    SandboxMode::None => "No environment variables besides PATH/HOME/LANG are set.",
                },
                sandbox::format_secs(opts.command_timeout)
            ),
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The shell command, e.g. \"cargo test 2>&1 | tail -50\"."}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_owned(),
        description,
        parameters,
    })
}
