//! Finding commands in a comment.

use super::{Command, CommandParseError};

const VERBS: &[&str] = &[
    "implement",
    "review",
    "fix",
    "ask",
    "approve",
    "cost",
    "help",
];

/// Every command in `body`, in order. `prefix` is the configured command (`/equitr`);
/// `app_slug` the app's name for mentions.
pub fn parse(body: &str, prefix: &str, app_slug: &str) -> Vec<Result<Command, CommandParseError>> {
    let mention = format!("@{app_slug}");
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for line in body.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // Fenced code: ``` or ~~~ (three or more), closed by the same char at least as long.
        let fence_run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        if let Some((c, n)) = fence {
            if fence_run(c) >= n && trimmed.trim_start_matches(c).trim().is_empty() {
                fence = None;
            }
            continue;
        }
        for c in ['`', '~'] {
            let n = fence_run(c);
            if n >= 3 && indent < 4 {
                fence = Some((c, n));
            }
        }
        if fence.is_some() || indent >= 4 || trimmed.starts_with('>') {
            continue;
        }
        let rest = if let Some(r) = strip_word(trimmed, prefix) {
            r
        } else if let Some(r) = strip_word_ci(trimmed, &mention) {
            r
        } else {
            continue;
        };
        out.push(parse_args(rest.trim()));
    }
    out
}

/// Commands in `body` that were not already in `previous` (an edited comment runs only
/// what the edit added).
pub fn newly_added(
    body: &str,
    previous: &str,
    prefix: &str,
    app_slug: &str,
) -> Vec<Result<Command, CommandParseError>> {
    let mut before = parse(previous, prefix, app_slug);
    let mut added = Vec::new();
    for c in parse(body, prefix, app_slug) {
        if let Some(i) = before.iter().position(|b| *b == c) {
            let _already_there = before.remove(i);
        } else {
            added.push(c);
        }
    }
    added
}

/// `word` followed by whitespace or the end of the line.
fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(word)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

fn strip_word_ci<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let head = line.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &line[word.len()..];
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

fn parse_args(rest: &str) -> Result<Command, CommandParseError> {
    let (verb, args) = match rest.split_once(char::is_whitespace) {
        Some((v, a)) => (v, a.trim()),
        None => (rest, ""),
    };
    let args = args.to_string();
    let verb_lc = verb.to_lowercase();
    Ok(match verb_lc.as_str() {
        "" => return Err(CommandParseError::Empty),
        "implement" => Command::Implement { notes: args },
        "review" => Command::Review,
        "fix" if args.is_empty() => {
            return Err(CommandParseError::MissingArgument {
                verb: "fix".into(),
                what: "notes on what to change".into(),
            })
        }
        "fix" => Command::Fix { notes: args },
        "ask" if args.is_empty() => {
            return Err(CommandParseError::MissingArgument {
                verb: "ask".into(),
                what: "a question".into(),
            })
        }
        "ask" => Command::Ask { question: args },
        "approve" => Command::Approve {
            plan: args
                .split_whitespace()
                .next()
                .map(|h| h.trim_matches('`').to_ascii_lowercase()),
        },
        "cost" => Command::Cost,
        "help" => Command::Help,
        _ => {
            return Err(CommandParseError::Unknown {
                suggestion: suggest(&verb_lc).map(str::to_string),
                verb: verb.to_string(),
            })
        }
    })
}

/// The closest verb within two edits.
fn suggest(verb: &str) -> Option<&'static str> {
    VERBS
        .iter()
        .map(|v| (levenshtein(verb, v), *v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> Vec<Result<Command, CommandParseError>> {
        parse(body, "/equitr", "equitr-coder")
    }

    #[test]
    fn snapshots() {
        let cases = [
            "/equitr implement",
            "/equitr implement use the builder pattern",
            "Please look.\n/equitr review\nthanks",
            "@equitr-coder ask why is this slow?",
            "@Equitr-Coder help",
            "/equitr fix rename the function",
            "/equitr fix",
            "/equitr ask",
            "/equitr reveiw",
            "/equitr frobnicate",
            "/equitr",
            "/equitrimplement",
            "see /equitr review in the docs",
            "```\n/equitr implement\n```\n/equitr cost",
            "~~~~\n/equitr implement\n~~~\n~~~~\n/equitr approve",
            "> /equitr implement\n/equitr help",
            "    /equitr implement",
            "`/equitr implement`",
        ];
        let rendered: String = cases
            .iter()
            .map(|c| format!("{c:?}\n  => {:?}\n", p(c)))
            .collect();
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn edits_run_only_new_commands() {
        let added = newly_added(
            "/equitr review\n/equitr cost",
            "/equitr review",
            "/equitr",
            "equitr-coder",
        );
        assert_eq!(added, vec![Ok(Command::Cost)]);
        assert!(newly_added("/equitr review", "/equitr review", "/equitr", "x").is_empty());
    }

    #[test]
    fn unknown_suggests() {
        let e = p("/equitr reveiw").remove(0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown command `reveiw` — did you mean `review`?"
        );
    }
}
