//! Deciding, before work starts, whether a task needs the supervisor: cheap heuristics on
//! the task text and the paths it names first; the worker model only when they are unsure.

use globset::GlobSet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskClass {
    Security,
    Architecture,
    Routine,
}

impl TaskClass {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskClass::Security => "security",
            TaskClass::Architecture => "architecture",
            TaskClass::Routine => "routine",
        }
    }

    /// Security and architecture work starts with a supervisor plan and ends with a review.
    pub fn is_escalated(self) -> bool {
        self != TaskClass::Routine
    }
}

impl std::fmt::Display for TaskClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The heuristics' verdict: a class with its reason, or unsure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sure { class: TaskClass, reason: String },
    Unsure,
}

// Word stems, matched at the start of a word ("authenticat" covers authentication,
// authenticated). Short all-letter stems of the security list must be whole words, so that
// "author" is not "auth" and "tlsx" is not "tls".
const SECURITY: &[&str] = &[
    "auth",
    "authenticat",
    "authoriz",
    "authoris",
    "login",
    "logout",
    "signup",
    "sign-up",
    "sign up",
    "input validation",
    "validate input",
    "user input",
    "untrusted",
    "password",
    "passwd",
    "credential",
    "secret",
    "token",
    "jwt",
    "oauth",
    "saml",
    "sso",
    "session",
    "cookie",
    "csrf",
    "xss",
    "injection",
    "sanitiz",
    "sanitis",
    "vulnerab",
    "exploit",
    "cve-",
    "crypto",
    "encrypt",
    "decrypt",
    "cipher",
    "hmac",
    "signature",
    "tls",
    "ssl",
    "certificate",
    "permission",
    "privilege",
    "rbac",
    "acl",
    "rate limit",
    "rate-limit",
    "security",
    "secure",
    "sandbox",
    "escape",
];

const ARCHITECTURE: &[&str] = &[
    "architect",
    "design",
    "scalab",
    "microservice",
    "schema",
    "caching layer",
    "cache layer",
    "restructur",
    "reorganiz",
    "reorganis",
    "large-scale",
    "large scale",
    "refactor",
    "migrate",
    "migration",
    "module boundar",
    "interface",
    "api design",
    "rest api",
    "restful",
    "graphql",
    "event-driven",
    "distributed",
    "concurren",
    "performance",
    "optimi",
    "bottleneck",
    "database",
];

const ROUTINE: &[&str] = &[
    "typo",
    "readme",
    "docs",
    "documentation",
    "comment",
    "rename",
    "format",
    "lint",
    "bump",
    "changelog",
    "spelling",
    "whitespace",
    "fix test",
    "add test",
    "log message",
    "hello",
    "print",
];

fn find_stem<'a>(text: &str, stems: &[&'a str], short_whole: bool) -> Option<&'a str> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    stems.iter().copied().find(|stem| {
        let whole = short_whole && stem.len() <= 4 && stem.chars().all(char::is_alphabetic);
        text.match_indices(stem).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let after = text[i + stem.len()..].chars().next();
            !alnum(before) && (!whole || !alnum(after))
        })
    })
}

/// Classify by keywords and by the paths the task names.
pub fn heuristic(task: &str, sensitive: &GlobSet) -> Verdict {
    let lower = task.to_lowercase();
    for word in task.split(|c: char| c.is_whitespace() || "`'\",;()".contains(c)) {
        let word = word.trim_end_matches(['.', ':', '!', '?']);
        if word.contains('/') || word.contains('.') {
            let path = word.trim_start_matches("./");
            if !path.is_empty() && sensitive.is_match(path) {
                return Verdict::Sure {
                    class: TaskClass::Security,
                    reason: format!("the task names the sensitive path `{path}`"),
                };
            }
        }
    }
    if let Some(stem) = find_stem(&lower, SECURITY, true) {
        return Verdict::Sure {
            class: TaskClass::Security,
            reason: format!("the task mentions security-relevant work (\"{stem}…\")"),
        };
    }
    if let Some(stem) = find_stem(&lower, ARCHITECTURE, false) {
        return Verdict::Sure {
            class: TaskClass::Architecture,
            reason: format!("the task mentions architectural work (\"{stem}…\")"),
        };
    }
    if let Some(stem) = find_stem(&lower, ROUTINE, false) {
        return Verdict::Sure {
            class: TaskClass::Routine,
            reason: format!("routine change (\"{stem}…\"), no security or design signal"),
        };
    }
    Verdict::Unsure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs() -> GlobSet {
        let mut b = globset::GlobSetBuilder::new();
        for p in crate::config::DEFAULT_SENSITIVE_PATHS {
            b.add(globset::Glob::new(p).unwrap());
        }
        b.build().unwrap()
    }

    fn class(task: &str) -> Option<TaskClass> {
        match heuristic(task, &globs()) {
            Verdict::Sure { class, .. } => Some(class),
            Verdict::Unsure => None,
        }
    }

    #[test]
    fn guide_examples() {
        assert_eq!(
            class("Design a RESTful API for a user management system with authentication, rate limiting, and proper error handling"),
            Some(TaskClass::Security)
        );
        assert_eq!(
            class("Create a scalable database schema for an e-commerce platform"),
            Some(TaskClass::Architecture)
        );
        assert_eq!(
            class("Optimize this slow Python function that's processing large datasets"),
            Some(TaskClass::Architecture)
        );
        assert_eq!(class("Fix the typo in README.md"), Some(TaskClass::Routine));
        // The README's first command.
        assert_eq!(
            class("Add input validation to the signup handler"),
            Some(TaskClass::Security)
        );
    }

    #[test]
    fn sensitive_paths_escalate() {
        assert_eq!(
            class("Update .github/workflows/ci.yml to run on push"),
            Some(TaskClass::Security)
        );
        assert_eq!(class("Bump serde in Cargo.toml"), Some(TaskClass::Security));
    }

    #[test]
    fn word_starts_only() {
        assert_eq!(class("credit the author in src/greet.txt"), None);
        assert_eq!(class("add OAuth login"), Some(TaskClass::Security));
        assert_eq!(class("fix the catalogue"), None); // "log" inside "catalogue" is not "login"
    }
}
