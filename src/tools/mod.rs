//! STUB (replaced by the tools branch)
use crate::llm::ToolSpec;
use std::path::{Path, PathBuf};
use std::time::Duration;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    Bubblewrap,
    None,
}
#[derive(Debug, Clone)]
pub struct ToolboxOptions {
    pub access: Access,
    pub sandbox: SandboxMode,
    pub command_timeout: Duration,
    pub max_read_bytes: usize,
    pub max_output_bytes: usize,
}
impl Default for ToolboxOptions {
    fn default() -> Self {
        ToolboxOptions {
            access: Access::ReadWrite,
            sandbox: SandboxMode::Bubblewrap,
            command_timeout: Duration::from_secs(120),
            max_read_bytes: 100_000,
            max_output_bytes: 30_000,
        }
    }
}
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
}
pub struct Toolbox {
    root: PathBuf,
}
impl Toolbox {
    pub fn new(root: &Path, _opts: ToolboxOptions) -> anyhow::Result<Toolbox> {
        Ok(Toolbox {
            root: root.canonicalize()?,
        })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn specs(&self) -> Vec<ToolSpec> {
        vec![]
    }
    pub fn handles(&self, _name: &str) -> bool {
        false
    }
    pub async fn call(&self, _name: &str, _arguments: &str) -> ToolOutcome {
        ToolOutcome {
            content: String::new(),
            is_error: true,
        }
    }
}
pub fn truncate_head_tail(text: &str, max_bytes: usize) -> String {
    text.chars().take(max_bytes).collect()
}
