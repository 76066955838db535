//! The per-repository file `.github/equitr.yml`, always read from the default branch.
//! A broken file is answered on the thread with its line and error, so the parse error
//! carries both.

use schemars::JsonSchema;
use serde::Deserialize;

use super::DEFAULT_SENSITIVE_PATHS;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
/// `.github/equitr.yml`, read from the default branch: when the bot acts on this
/// repository, what it may spend, how it reviews and implements, and its schedules.
#[serde(deny_unknown_fields, default)]
#[schemars(title = "equitr-coder repository configuration")]
pub struct RepoConfig {
    /// What starts the bot: the comment command, the label, automatic reviews.
    pub triggers: Triggers,
    /// What the bot may spend on this repository.
    pub budget: Budget,
    /// How pull requests are reviewed.
    pub review: Review,
    /// How issues are implemented.
    pub implement: Implement,
    /// Tasks run on a schedule.
    pub schedules: Vec<Schedule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Triggers {
    /// The comment command, `/equitr` by default.
    pub command: String,
    /// The issue label that starts an implementation.
    pub label: String,
    /// Review pull requests when they are opened, pushed to or marked ready.
    pub auto_review: bool,
    /// Users allowed to trigger without write access (explicit exceptions).
    pub allowed_users: Vec<String>,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            command: "/equitr".into(),
            label: "equitr".into(),
            auto_review: false,
            allowed_users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// USD cap per job (it can only tighten the operator's cap).
    pub per_run_usd: Option<f64>,
    /// USD cap per calendar month (UTC) for this repository.
    pub monthly_usd: Option<f64>,
}

/// A finding's severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Review {
    /// Globs of files the supervisor reviews too, and that are reviewed first.
    pub sensitive_paths: Vec<String>,
    /// Findings at or above this severity make the review REQUEST_CHANGES.
    pub request_changes_on: Severity,
    /// Same as `triggers.auto_review`.
    pub auto: Option<bool>,
    /// Review draft pull requests automatically too (a draft is reviewed when it is marked
    /// ready otherwise). `/equitr review` works on drafts either way.
    pub drafts: bool,
    /// Findings below this severity are not posted inline; they are listed in a collapsed
    /// section of the review body.
    pub inline_min_severity: Severity,
    /// The most inline comments one review posts (the most severe first); the rest go to
    /// the collapsed section.
    #[schemars(range(max = 100))]
    pub max_inline_comments: usize,
    /// Globs of files not to review. The default skips lock files, vendored and generated
    /// code; setting it replaces the default list.
    pub exclude: Vec<String>,
    /// When not empty, only files matching one of these globs are reviewed.
    pub include: Vec<String>,
}

/// Files a review skips unless `review.exclude` says otherwise: lock files, vendored and
/// generated code, minified bundles and snapshots.
pub const DEFAULT_REVIEW_EXCLUDE: &[&str] = &[
    "**/Cargo.lock",
    "**/package-lock.json",
    "**/yarn.lock",
    "**/pnpm-lock.yaml",
    "**/poetry.lock",
    "**/Pipfile.lock",
    "**/composer.lock",
    "**/Gemfile.lock",
    "**/go.sum",
    "**/*.lock",
    "vendor/**",
    "**/vendor/**",
    "third_party/**",
    "**/node_modules/**",
    "**/*.min.js",
    "**/*.min.css",
    "**/*.pb.go",
    "**/*_pb2.py",
    "**/*.generated.*",
    "**/generated/**",
    "**/*.snap",
];

impl Default for Review {
    fn default() -> Self {
        Review {
            sensitive_paths: DEFAULT_SENSITIVE_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            request_changes_on: Severity::High,
            auto: None,
            drafts: false,
            inline_min_severity: Severity::Low,
            max_inline_comments: 25,
            exclude: DEFAULT_REVIEW_EXCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect(),
            include: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Implement {
    /// Post the supervisor's plan and wait for `/equitr approve` before implementing.
    pub require_plan_approval: bool,
    /// The command the worker runs to test its change (in the sandbox).
    pub test_command: Option<String>,
    /// Let `run_command` run in untrusted-context mode (an outsider's issue); off by default.
    pub untrusted_commands: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The schedule's name (its branch is `equitr/refactor-<name>`).
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), UTC.
    pub cron: String,
    /// What to do, as you would write it in `/equitr implement`.
    pub task: String,
    /// USD cap for each run of it.
    pub budget_usd: Option<f64>,
}

/// A schedule's name cut down to what a branch ref and a reader can take: lowercase ASCII
/// letters and digits joined by `-`, at most 48 of them (`task` when nothing is left).
pub fn schedule_slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() { "task" } else { slug }.to_string()
}

impl Schedule {
    /// The cron expression: five fields (minute hour day-of-month month day-of-week), UTC,
    /// with lists, ranges, steps and names — no seconds field.
    pub fn parsed_cron(&self) -> Result<croner::Cron, String> {
        if self.cron.split_whitespace().count() != 5 {
            return Err(format!(
                "`{}` is not a 5-field cron expression (minute hour day month weekday, UTC)",
                self.cron
            ));
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(&self.cron)
            .map_err(|e| format!("`{}` is not a valid cron expression: {e}", self.cron))
    }
}

/// `.github/equitr.yml:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".github/equitr.yml:{line}: {message}")]
pub struct RepoConfigError {
    pub line: usize,
    pub message: String,
}

impl RepoConfig {
    pub const PATH: &'static str = ".github/equitr.yml";

    pub fn parse(text: &str) -> Result<RepoConfig, RepoConfigError> {
        if text.trim().is_empty() {
            return Ok(RepoConfig::default());
        }
        let cfg: RepoConfig = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            let full = e.to_string();
            let message = match full.rsplit_once(" at line ") {
                Some((head, _)) => head.to_string(),
                None => full,
            };
            // The parser quotes the file's own text, which may span lines: one line here.
            let message = message.replace('\r', "").replace('\n', "\\n");
            RepoConfigError { line, message }
        })?;
        let lines = super::key_lines(text);
        let at = |key: &str| lines.get(key).copied().unwrap_or(1);
        let bad = |key: &str, message: String| RepoConfigError {
            line: at(key),
            message: format!("{key}: {message}")
                .replace('\r', "")
                .replace('\n', "\\n"),
        };
        for (key, v) in [
            ("budget.per_run_usd", cfg.budget.per_run_usd),
            ("budget.monthly_usd", cfg.budget.monthly_usd),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(bad(key, format!("must be a USD amount ≥ 0, got {v}")));
                }
            }
        }
        if !cfg.triggers.command.starts_with('/')
            || cfg.triggers.command.contains(char::is_whitespace)
        {
            return Err(bad(
                "triggers.command",
                format!(
                    "must be one word starting with `/`, got `{}`",
                    cfg.triggers.command
                ),
            ));
        }
        for (key, globs) in [
            ("review.sensitive_paths", &cfg.review.sensitive_paths),
            ("review.exclude", &cfg.review.exclude),
            ("review.include", &cfg.review.include),
        ] {
            for p in globs {
                globset::Glob::new(p).map_err(|e| bad(key, format!("`{p}` is not a glob: {e}")))?;
            }
        }
        if cfg.review.max_inline_comments > 100 {
            return Err(bad(
                "review.max_inline_comments",
                format!(
                    "must be at most 100 (one review's comments), got {}",
                    cfg.review.max_inline_comments
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in cfg.schedules.iter().enumerate() {
            let key = format!("schedules.{i}.cron");
            if let Err(e) = s.parsed_cron() {
                return Err(bad(&key, e));
            }
            // Unique by the branch they work on, so two schedules never share one.
            let slug = schedule_slug(&s.name);
            if s.name.trim().is_empty() || !names.insert(slug.clone()) {
                return Err(bad(
                    &format!("schedules.{i}.name"),
                    format!(
                        "`{}` must be a non-empty name, unique among the schedules (its branch `refactor-{slug}` is taken)",
                        s.name
                    ),
                ));
            }
            if let Some(b) = s.budget_usd {
                if !b.is_finite() || b < 0.0 {
                    return Err(bad(
                        &format!("schedules.{i}.budget_usd"),
                        format!("must be a USD amount ≥ 0, got {b}"),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    pub fn auto_review(&self) -> bool {
        self.review.auto.unwrap_or(self.triggers.auto_review)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = r#"triggers: { command: /equitr, label: equitr, auto_review: true }
budget:   { per_run_usd: 2.00, monthly_usd: 50.00 }
review:   { sensitive_paths: ["**/auth/**", ".github/workflows/**"], request_changes_on: high }
implement: { require_plan_approval: false, test_command: "cargo test" }
schedules:
  - { name: weekly-cleanup, cron: "0 3 * * 1", task: "Remove dead code in src/", budget_usd: 1.0 }
"#;

    #[test]
    fn the_design_example_parses() {
        let c = RepoConfig::parse(DESIGN_EXAMPLE).unwrap();
        assert!(c.auto_review());
        assert_eq!(c.budget.monthly_usd, Some(50.0));
        assert_eq!(c.review.request_changes_on, Severity::High);
        assert_eq!(c.implement.test_command.as_deref(), Some("cargo test"));
        assert_eq!(c.schedules[0].name, "weekly-cleanup");
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = RepoConfig::parse("").unwrap();
        assert_eq!(c, RepoConfig::default());
        assert_eq!(c.triggers.command, "/equitr");
        assert!(!c.auto_review());
    }

    #[test]
    fn errors_name_the_line() {
        let e = RepoConfig::parse("triggers:\n  label: x\n  lable: y\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string()
                .starts_with(".github/equitr.yml:3: triggers: unknown field `lable`"),
            "{e}"
        );
        let e = RepoConfig::parse("budget:\n  monthly_usd: -5\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".github/equitr.yml:2: budget.monthly_usd: must be a USD amount ≥ 0, got -5"
        );
        let e = RepoConfig::parse("schedules:\n  - name: a\n    cron: \"* *\"\n    task: t\n")
            .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = RepoConfig::parse("review:\n  request_changes_on: urgent\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
