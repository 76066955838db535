//! The help text, generated from the commands themselves: a command added to [`Command`]
//! does not compile until it has a line here.

use super::Command;

/// Every command, in the order the help lists them.
const ALL: [Command; 7] = [
    Command::Implement {
        notes: String::new(),
    },
    Command::Review,
    Command::Fix {
        notes: String::new(),
    },
    Command::Ask {
        question: String::new(),
    },
    Command::Approve { plan: None },
    Command::Cost,
    Command::Help,
];

/// The command's arguments and what it does, as the help shows them.
fn line(c: &Command) -> (&'static str, &'static str) {
    match c {
        Command::Implement { .. } => (" [notes]", "implement this issue and open a pull request"),
        Command::Review => ("", "review this pull request"),
        Command::Fix { .. } => (
            " <notes>",
            "change this bot's pull request as the notes say",
        ),
        Command::Ask { .. } => (
            " <question>",
            "answer a question about the code (read-only)",
        ),
        Command::Approve { .. } => ("", "approve the posted plan and start the work"),
        Command::Cost => ("", "this month's spend against the budget caps"),
        Command::Help => ("", "this list"),
    }
}

/// The help text, listing every command under the configured prefix.
pub fn help_text(prefix: &str) -> String {
    let mut text = String::from("Commands (at the start of a line; also `@app-name <command>`):");
    for c in &ALL {
        let (args, what) = line(c);
        text.push_str(&format!("\n- `{prefix} {}{args}` — {what}", c.verb()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_command_under_the_prefix() {
        assert_eq!(
            help_text("/equitr"),
            "Commands (at the start of a line; also `@app-name <command>`):\n\
             - `/equitr implement [notes]` — implement this issue and open a pull request\n\
             - `/equitr review` — review this pull request\n\
             - `/equitr fix <notes>` — change this bot's pull request as the notes say\n\
             - `/equitr ask <question>` — answer a question about the code (read-only)\n\
             - `/equitr approve` — approve the posted plan and start the work\n\
             - `/equitr cost` — this month's spend against the budget caps\n\
             - `/equitr help` — this list"
        );
    }
}
