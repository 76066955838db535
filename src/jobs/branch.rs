//! The bot's branch names, in one place: every branch it creates starts with [`PREFIX`].

use crate::config::repo::schedule_slug;

/// What every branch of the bot's starts with.
pub const PREFIX: &str = "equitr/";

/// The Action's budget ledger branch (see `action::ledger`).
pub const LEDGER: &str = "equitr/ledger";

/// The branch an issue is implemented on.
pub fn issue(number: u64) -> String {
    format!("{PREFIX}issue-{number}")
}

/// The branch a free-standing task (a schedule, a manual Action run) works on.
pub fn refactor(name: &str) -> String {
    format!("{PREFIX}refactor-{}", schedule_slug(name))
}

/// Whether a branch is named like one of the bot's. A name proves nothing about who made
/// the branch: the pipeline checks who opened its pull request too.
pub fn is_bot_branch(name: &str) -> bool {
    name.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_are_short_lowercase_refs_under_the_prefix() {
        assert_eq!(issue(12), "equitr/issue-12");
        assert_eq!(
            refactor("Weekly Refactor!"),
            "equitr/refactor-weekly-refactor"
        );
        assert_eq!(refactor("../../etc"), "equitr/refactor-etc");
        assert_eq!(refactor("ünïcode"), "equitr/refactor-n-code");
        assert_eq!(refactor(""), "equitr/refactor-task");
        assert!(refactor(&"x".repeat(500)).len() <= "equitr/refactor-".len() + 48);
        assert!(is_bot_branch(&issue(1)) && is_bot_branch(LEDGER));
        assert!(!is_bot_branch("feature/equitr/x"));
    }
}
