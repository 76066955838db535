//! The product's command language: `/equitr <verb> …` or `@<app-slug> <verb> …` at the start
//! of a line of a comment. Markdown-aware: commands inside fenced or indented code blocks,
//! block quotes and inline code are not commands (quoting someone's command must not rerun it).

mod help;
mod parser;

use serde::{Deserialize, Serialize};

pub use help::help_text;
pub use parser::{newly_added, parse};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Implement the issue; optional extra instructions.
    Implement {
        notes: String,
    },
    Review,
    /// Change this PR's branch as the notes say.
    Fix {
        notes: String,
    },
    Ask {
        question: String,
    },
    /// Approve the posted plan: the newest, or the one whose hash (as the plan shows it) is
    /// named.
    Approve {
        plan: Option<String>,
    },
    Cost,
    Help,
}

impl Command {
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Implement { .. } => "implement",
            Command::Review => "review",
            Command::Fix { .. } => "fix",
            Command::Ask { .. } => "ask",
            Command::Approve { .. } => "approve",
            Command::Cost => "cost",
            Command::Help => "help",
        }
    }
}

/// A line that addressed the bot but is not a valid command; answered with the help text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CommandParseError {
    #[error("unknown command `{verb}`{}", suggestion.as_ref().map(|s| format!(" — did you mean `{s}`?")).unwrap_or_default())]
    Unknown {
        verb: String,
        suggestion: Option<String>,
    },
    #[error("`{verb}` needs {what}")]
    MissingArgument { verb: String, what: String },
    #[error("no command given")]
    Empty,
    /// A real command on the wrong kind of thread (`review` on an issue).
    #[error("`{prefix} {verb}` works on {}", works_on(verb, prefix))]
    Misplaced { verb: String, prefix: String },
}

/// Where a command works, for [`CommandParseError::Misplaced`].
fn works_on(verb: &str, prefix: &str) -> String {
    match verb {
        "implement" => format!("issues; on a pull request use `{prefix} fix <notes>`"),
        "fix" => "the bot's pull requests".into(),
        _ => "pull requests".into(),
    }
}
