//! The tool registry: each tool is one `impl Tool` — its name, what it needs, the
//! description and parameters the models read, and the call — listed once in [`TOOLS`].

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    files, sandbox, search, Access, SandboxMode, ToolError, ToolOutcome, Toolbox, ToolboxOptions,
};

/// What a tool needs the toolbox to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Reading the workspace: every toolbox.
    Read,
    /// Writing files: not a read-only toolbox.
    Write,
    /// Running commands: not read-only, not untrusted-context mode.
    Commands,
}

impl Needs {
    pub(crate) fn allowed(self, access: Access) -> bool {
        match (self, access) {
            (Needs::Read, _) => true,
            (Needs::Write, a) => a != Access::ReadOnly,
            (Needs::Commands, a) => a == Access::ReadWrite,
        }
    }
}

/// One tool.
#[async_trait]
pub(crate) trait Tool: Send + Sync {
    fn name(&self) -> &'static str;
    fn needs(&self) -> Needs;
    /// The description and the JSON schema of the parameters, as the models read them.
    fn spec(&self, opts: &ToolboxOptions) -> (String, Value);
    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError>;
}

/// Every tool, in the order the models see them.
pub(crate) static TOOLS: &[&dyn Tool] = &[
    &ListFiles,
    &ReadFile,
    &Search,
    &WriteFile,
    &EditFile,
    &RunCommand,
];

/// `list_files`.
pub(crate) struct ListFiles;

#[async_trait]
impl Tool for ListFiles {
    fn name(&self) -> &'static str {
        "list_files"
    }

    fn needs(&self) -> Needs {
        Needs::Read
    }

    fn spec(&self, _opts: &ToolboxOptions) -> (String, Value) {
        (
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
            }))
    }

    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError> {
        tb.blocking(arguments, |ws, a, o| {
            files::list_files(ws, a, o.max_output_bytes)
        })
        .await
        .map(ToolOutcome::ok)
    }
}

/// `read_file`.
pub(crate) struct ReadFile;

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &'static str {
        "read_file"
    }

    fn needs(&self) -> Needs {
        Needs::Read
    }

    fn spec(&self, opts: &ToolboxOptions) -> (String, Value) {
        (
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
            }))
    }

    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError> {
        tb.blocking(arguments, |ws, a, o| {
            files::read_file(ws, a, o.max_read_bytes)
        })
        .await
        .map(ToolOutcome::ok)
    }
}

/// `search`.
pub(crate) struct Search;

#[async_trait]
impl Tool for Search {
    fn name(&self) -> &'static str {
        "search"
    }

    fn needs(&self) -> Needs {
        Needs::Read
    }

    fn spec(&self, _opts: &ToolboxOptions) -> (String, Value) {
        (
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
            }))
    }

    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError> {
        tb.blocking(arguments, |ws, a, o| {
            search::search(ws, a, o.max_output_bytes)
        })
        .await
        .map(ToolOutcome::ok)
    }
}

/// `write_file`.
pub(crate) struct WriteFile;

#[async_trait]
impl Tool for WriteFile {
    fn name(&self) -> &'static str {
        "write_file"
    }

    fn needs(&self) -> Needs {
        Needs::Write
    }

    fn spec(&self, _opts: &ToolboxOptions) -> (String, Value) {
        (
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
        )
    }

    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError> {
        tb.blocking(arguments, |ws, a, _| files::write_file(ws, a))
            .await
            .map(ToolOutcome::ok)
    }
}

/// `edit_file`.
pub(crate) struct EditFile;

#[async_trait]
impl Tool for EditFile {
    fn name(&self) -> &'static str {
        "edit_file"
    }

    fn needs(&self) -> Needs {
        Needs::Write
    }

    fn spec(&self, _opts: &ToolboxOptions) -> (String, Value) {
        (
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
            }))
    }

    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError> {
        tb.blocking(arguments, |ws, a, _| files::edit_file(ws, a))
            .await
            .map(ToolOutcome::ok)
    }
}

/// `run_command`.
pub(crate) struct RunCommand;

#[async_trait]
impl Tool for RunCommand {
    fn name(&self) -> &'static str {
        "run_command"
    }

    fn needs(&self) -> Needs {
        Needs::Commands
    }

    fn spec(&self, opts: &ToolboxOptions) -> (String, Value) {
        (
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
            }))
    }

    async fn call(&self, tb: &Toolbox, arguments: &str) -> Result<ToolOutcome, ToolError> {
        Ok(tb.run_command(arguments).await)
    }
}
