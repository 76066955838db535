//! The shape of the house, checked on every test run (issue 10): no file under `src/` over 600
//! lines, no function over 100 lines unless the comment above it says why (`// long: …`), and
//! `use` arrows that point one way — front doors → jobs → agent → llm/tools → the leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The code of a line without its comment and string contents (braces in either don't count).
fn code(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_str => {
                chars.next();
            }
            '"' => in_str = !in_str,
            '/' if !in_str && chars.peek() == Some(&'/') => break,
            '\'' if !in_str => {
                // A char literal such as '{' (not a lifetime): skip it whole.
                let rest: String = chars.clone().take(3).collect();
                if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                } else if rest.starts_with('\\') && rest.chars().nth(2) == Some('\'') {
                    chars.next();
                    chars.next();
                    chars.next();
                }
            }
            _ if !in_str => out.push(c),
            _ => {}
        }
    }
    out
}

/// `(line, name, length)` of every function outside the unit tests.
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if t == "#[cfg(test)]" {
            break;
        }
        let fn_at = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "pub(crate) async fn ",
            "pub(super) async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .find(|p| t.starts_with(**p))
        .map(|p| p.len());
        if let Some(skip) = fn_at {
            let name: String = t[skip..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let (mut depth, mut started, mut j) = (0i64, false, i);
            while j < lines.len() {
                let c = code(lines[j]);
                depth += c.matches('{').count() as i64 - c.matches('}').count() as i64;
                started |= c.contains('{');
                if (started && depth <= 0) || (!started && c.trim_end().ends_with(';')) {
                    break;
                }
                j += 1;
            }
            // The comment lines right above the function (and its attributes) say why.
            let why = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[")
                })
                .any(|l| l.trim_start().starts_with("// long:"));
            if !why {
                out.push((i + 1, name, j - i + 1));
            }
            i = j;
        }
        i += 1;
    }
    out
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = all_sources()
        .into_iter()
        .filter(|(_, t)| t.lines().count() > 600)
        .map(|(p, t)| format!("{p}: {} lines", t.lines().count()))
        .collect();
    assert!(long.is_empty(), "over 600 lines:\n{}", long.join("\n"));
}

#[test]
fn no_function_is_over_100_lines_unless_it_says_why() {
    let mut long = Vec::new();
    for (p, t) in all_sources() {
        for (line, name, n) in functions(&t) {
            if n > 100 {
                long.push(format!("{p}:{line}: fn {name} is {n} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over 100 lines (say why with `// long: …` above it, or split it):\n{}",
        long.join("\n")
    );
}

#[test]
fn use_arrows_point_one_way() {
    // What each top-level module may use besides itself. The leaves use only leaves.
    let leaves = [
        "config", "github", "store", "money", "scrub", "clock", "commands",
    ];
    let mut allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for leaf in leaves {
        allowed.insert(leaf, leaves.to_vec());
    }
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        leaves
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    allowed.insert("llm", with(&[]));
    allowed.insert("tools", with(&["llm"]));
    allowed.insert("agent", with(&["llm", "tools"]));
    allowed.insert("jobs", with(&["agent", "llm", "tools"]));
    allowed.insert("server", with(&["jobs", "agent", "llm", "tools"]));
    allowed.insert("action", with(&["jobs", "agent", "llm", "tools"]));
    allowed.insert(
        "cli",
        with(&["server", "action", "jobs", "agent", "llm", "tools"]),
    );
    let mut wrong = Vec::new();
    for (p, t) in all_sources() {
        let module = p
            .trim_start_matches("src/")
            .split(['/', '.'])
            .next()
            .unwrap()
            .to_string();
        let Some(ok) = allowed.get(module.as_str()) else {
            continue; // lib.rs, main.rs
        };
        for (n, line) in t.lines().enumerate() {
            let c = code(line);
            for (at, _) in c.match_indices("crate::") {
                let used: String = c[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if used != module && !ok.contains(&used.as_str()) {
                    wrong.push(format!("{p}:{}: {module} uses crate::{used}", n + 1));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows pointing the wrong way:\n{}",
        wrong.join("\n")
    );
}
