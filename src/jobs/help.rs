//! `/equitr help`, and the answer to a line that addressed the bot but was not a command.

use crate::commands::{help_text, CommandParseError};

use super::{JobCtx, JobReport};

/// The help text under the repository's command, after the parse error that prompted it.
pub fn text(prefix: &str, error: Option<&CommandParseError>) -> String {
    match error {
        Some(e) => format!("{e}\n\n{}", help_text(prefix)),
        None => help_text(prefix),
    }
}

pub(super) async fn run(
    ctx: &JobCtx<'_>,
    number: u64,
    error: Option<&CommandParseError>,
) -> anyhow::Result<JobReport> {
    ctx.repo
        .create_comment(number, &text(&ctx.cfg.triggers.command, error))
        .await?;
    Ok(JobReport::done("help"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_command_is_named_with_a_suggestion_before_the_list() {
        let e = CommandParseError::Unknown {
            verb: "reveiw".into(),
            suggestion: Some("review".into()),
        };
        let t = text("/bot", Some(&e));
        assert!(
            t.starts_with("unknown command `reveiw` — did you mean `review`?\n\nCommands"),
            "{t}"
        );
        assert!(
            t.contains("- `/bot review` — review this pull request"),
            "{t}"
        );
        assert_eq!(text("/bot", None), help_text("/bot"));
    }
}
