//! A finding's identity and where it lands.
//!
//! **Identity.** A finding's fingerprint is a hash of its path, its kind (the rule the model
//! names, or its title) and the code it points at, whitespace-normalised — not its line
//! number, so the same finding after lines shifted is the same finding. Where the code it
//! points at is too short to tell places apart (`}`, `return x;`), the nearest non-blank
//! lines above and below are part of it. The fingerprint rides along in a hidden mark on the
//! comment (or the review body) that raised it, with a hash of the code alone, so a later
//! review can tell that the code is gone (fixed) without any store of its own.
//!
//! **Placement.** A finding on lines the pull request's diff shows is an inline comment (a
//! range when it spans lines inside one hunk); one on a changed file but off the diff's lines
//! is a file-level comment; one on a file the pull request does not change goes in the body.

use std::collections::BTreeSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::agent::diff::FileDiff;
use crate::agent::review::{Finding, Severity};
use crate::tools::workspace::Workspace;

/// The most lines of code a fingerprint reads.
const MAX_LINES: usize = 8;
/// Fewer letters and digits than this, and the code alone does not identify a place.
const SHORT: usize = 12;
/// The largest file read to fingerprint a finding.
const MAX_FILE: u64 = 8 << 20;

/// A hash of the code a finding points at: how many lines, and their normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub lines: usize,
    pub hash: String,
}

/// A finding with its identity.
#[derive(Debug, Clone)]
pub struct Marked {
    pub finding: Finding,
    pub fingerprint: String,
    pub code: Code,
}

fn hex16(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn normalise(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The kind as a slug: the model's rule name, else its title.
fn kind(f: &Finding) -> String {
    let raw = f
        .kind
        .as_deref()
        .filter(|k| !k.trim().is_empty())
        .unwrap_or(&f.title);
    let mut out = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(60).collect()
}

/// A file of the checkout as a review sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Text(String),
    /// Not in the checkout: deleted (or never there).
    Gone,
    /// There, but not read: too large, not a regular file, or outside the checkout. Whether
    /// an earlier finding's code is still in it cannot be told, so it is not taken for fixed.
    Unknown,
}

impl Seen {
    pub fn text(&self) -> Option<&str> {
        match self {
            Seen::Text(t) => Some(t),
            Seen::Gone | Seen::Unknown => None,
        }
    }
}

/// A file of the checkout as text, if it is one (inside the checkout, not too large).
pub fn read(root: &Path, path: &str) -> Seen {
    let plain = Path::new(path)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Seen::Unknown;
    }
    if matches!(std::fs::symlink_metadata(root.join(path)), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return Seen::Gone;
    }
    let text = || -> Option<String> {
        let ws = Workspace::new(root).ok()?;
        let real = ws.resolve_existing(path).ok()?;
        let meta = std::fs::metadata(&real).ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE {
            return None;
        }
        Some(String::from_utf8_lossy(&std::fs::read(real).ok()?).into_owned())
    };
    text().map_or(Seen::Unknown, Seen::Text)
}

/// The normalised lines `start..=end` (1-based, at most [`MAX_LINES`] ending at `end`) of
/// `lines`, with the 0-based range they came from; `None` when they do not exist.
fn span(lines: &[&str], start: u64, end: u64) -> Option<(std::ops::Range<usize>, Vec<String>)> {
    let e = usize::try_from(end).ok()?;
    let s = usize::try_from(start.max(1)).ok()?;
    if e < s || e > lines.len() {
        return None;
    }
    let s = s.max(e.saturating_sub(MAX_LINES - 1));
    let range = s - 1..e;
    let code = lines[range.clone()].iter().map(|l| normalise(l)).collect();
    Some((range, code))
}

fn hash_code(code: &[String]) -> String {
    let parts: Vec<&str> = code.iter().map(String::as_str).collect();
    hex16(&parts)
}

/// The fingerprint of `f`, reading the code it points at from `file` (the file at the
/// reviewed head; `None` when it cannot be read).
pub fn mark(f: Finding, file: Option<&str>) -> Marked {
    let kind = kind(&f);
    let all: Vec<&str> = file.map(|t| t.lines().collect()).unwrap_or_default();
    let start = f.start_line.filter(|s| *s <= f.line).unwrap_or(f.line);
    let (fingerprint, code) = match span(&all, start, f.line) {
        Some((range, code)) => {
            let mut place = code.clone();
            let letters: usize = code
                .iter()
                .map(|l| l.chars().filter(|c| c.is_alphanumeric()).count())
                .sum();
            if letters < SHORT {
                let above = all[..range.start]
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty());
                let below = all[range.end..].iter().find(|l| !l.trim().is_empty());
                place.insert(0, above.map_or(String::new(), |l| normalise(l)));
                place.push(below.map_or(String::new(), |l| normalise(l)));
            }
            let code_hash = hash_code(&code);
            let place_hash = hash_code(&place);
            (
                hex16(&[&f.path, &kind, &place_hash]),
                Code {
                    lines: code.len(),
                    hash: code_hash,
                },
            )
        }
        // No code to point at (the line is past the end, the file is gone): the finding is
        // its path, kind and title.
        None => (
            hex16(&[&f.path, &kind, &normalise(&f.title)]),
            Code {
                lines: 0,
                hash: String::new(),
            },
        ),
    };
    Marked {
        finding: f,
        fingerprint,
        code,
    }
}

/// The longest path a mark carries (hex-encoded, so twice this); a longer one is left out,
/// and a finding listed in a review body without its path is never taken for fixed.
const MAX_MARK_PATH: usize = 512;

/// The hidden mark that carries a finding's identity in what the bot posts. The path rides
/// along hex-encoded (`at=`), so no path can close the comment or break the mark; an inline
/// comment has its path from GitHub, a finding listed in the body only from here.
pub fn hidden_mark(m: &Marked) -> String {
    let path = &m.finding.path;
    let at = if path.len() <= MAX_MARK_PATH {
        let hex: String = path.bytes().map(|b| format!("{b:02x}")).collect();
        format!(" at={hex}")
    } else {
        String::new()
    };
    format!(
        "<!-- equitr:finding={} lines={} code={} sev={}{at} -->",
        m.fingerprint,
        m.code.lines,
        m.code.hash,
        m.finding.severity.name()
    )
}

/// A finding's identity as read back from a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalled {
    pub fingerprint: String,
    pub code: Code,
    pub severity: Option<Severity>,
    /// The path the mark names, when it names one.
    pub path: Option<String>,
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 || s.len() > 2 * MAX_MARK_PATH {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok().filter(|p| !p.is_empty())
}

/// Every finding mark in `text`.
pub fn recall(text: &str) -> Vec<Recalled> {
    let mut out = Vec::new();
    for piece in text.split("<!-- equitr:finding=").skip(1) {
        let Some((inner, _)) = piece.split_once("-->") else {
            continue;
        };
        let mut words = inner.split_whitespace();
        let Some(fp) = words.next().filter(|f| is_hex(f)) else {
            continue;
        };
        let mut code = Code {
            lines: 0,
            hash: String::new(),
        };
        let mut severity = None;
        let mut path = None;
        for w in words {
            if let Some(s) = w.strip_prefix("sev=") {
                severity = Severity::parse(s);
            }
            if let Some(p) = w.strip_prefix("at=") {
                path = unhex(p);
            }
            if let Some(n) = w.strip_prefix("lines=") {
                code.lines = n.parse().unwrap_or(0);
            } else if let Some(h) = w.strip_prefix("code=").filter(|h| is_hex(h)) {
                code.hash = h.to_string();
            }
        }
        out.push(Recalled {
            fingerprint: fp.to_string(),
            code,
            severity,
            path,
        });
    }
    out
}

/// A fingerprint or hash as the marks write them: hex digits, at most 64.
pub fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether the code a finding pointed at is still somewhere in `file`. A finding without
/// code, or in a file that could not be read, is never taken for fixed.
pub fn still_there(code: &Code, file: &Seen) -> bool {
    if code.lines == 0 || code.hash.is_empty() {
        return true;
    }
    let text = match file {
        Seen::Text(t) => t,
        Seen::Gone => return false,
        Seen::Unknown => return true,
    };
    let lines: Vec<String> = text.lines().map(normalise).collect();
    lines.windows(code.lines).any(|w| hash_code(w) == code.hash)
}

/// Where a finding lands on the pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Lines `start..=end` of the new side, all inside one hunk.
    Lines { start: u64, end: u64 },
    /// The file is in the diff, the line is not.
    File,
    /// The pull request does not change the file.
    Body,
}

/// Where `f` lands, given the pull request's whole diff.
pub fn place(f: &Finding, diff: &[FileDiff]) -> Place {
    let Some(file) = diff.iter().find(|d| d.path == f.path) else {
        return Place::Body;
    };
    if !file.commentable.contains(&f.line) {
        return Place::File;
    }
    let start = match f.start_line {
        Some(s) if s < f.line && contiguous(&file.commentable, s, f.line) => s,
        _ => f.line,
    };
    Place::Lines { start, end: f.line }
}

/// Whether every line of `start..=end` is commentable (one stretch of a hunk).
fn contiguous(lines: &BTreeSet<u64>, start: u64, end: u64) -> bool {
    end - start < 200 && (start..=end).all(|l| lines.contains(&l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::diff;

    fn finding(path: &str, line: u64, title: &str) -> Finding {
        Finding {
            path: path.into(),
            line,
            severity: Severity::High,
            title: title.into(),
            body: "b".into(),
            suggestion: None,
            start_line: None,
            kind: None,
            by: None,
        }
    }

    const CODE: &str = "fn main() {\n    let q = format!(\"select {id}\");\n    db.query(q)\n}\n";

    #[test]
    fn the_same_finding_after_lines_shifted_has_the_same_fingerprint() {
        let before = mark(finding("src/db.rs", 2, "SQL injection"), Some(CODE));
        let shifted = format!("// a comment\n\n{}", CODE.replace("    let", "\tlet"));
        let after = mark(finding("src/db.rs", 4, "SQL injection"), Some(&shifted));
        assert_eq!(before.fingerprint, after.fingerprint);
        let other = mark(finding("src/db.rs", 3, "SQL injection"), Some(CODE));
        assert_ne!(before.fingerprint, other.fingerprint, "another line");
        let kind = mark(finding("src/db.rs", 2, "Unchecked error"), Some(CODE));
        assert_ne!(before.fingerprint, kind.fingerprint, "another kind");
    }

    #[test]
    fn short_code_is_told_apart_by_its_neighbours() {
        let text = "fn a() {\n    x\n}\nfn b() {\n    y\n}\n";
        let a = mark(finding("f.rs", 3, "t"), Some(text));
        let b = mark(finding("f.rs", 6, "t"), Some(text));
        assert_ne!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn a_mark_reads_back_and_tells_whether_the_code_is_gone() {
        let m = mark(finding("src/db.rs", 2, "SQL injection"), Some(CODE));
        let text = format!("**High: SQL injection**\n\n{}\n", hidden_mark(&m));
        let r = recall(&text);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].fingerprint, m.fingerprint);
        assert_eq!(r[0].path.as_deref(), Some("src/db.rs"));
        assert!(still_there(&r[0].code, &Seen::Text(format!("\n\n{CODE}"))));
        let fixed = CODE.replace("format!(\"select {id}\")", "sql::select(id)");
        assert!(!still_there(&r[0].code, &Seen::Text(fixed)));
        assert!(
            !still_there(&r[0].code, &Seen::Gone),
            "the file was deleted"
        );
        assert!(
            still_there(&r[0].code, &Seen::Unknown),
            "a file too large to read is not taken for fixed"
        );
        assert!(recall("<!-- equitr:finding=zz'> -->").is_empty());
    }

    #[test]
    fn a_path_that_would_break_the_mark_reads_back_whole() {
        let path = "docs/a --> b <!-- c.md";
        let m = mark(finding(path, 1, "t"), Some("x = 1\n"));
        let text = hidden_mark(&m);
        assert_eq!(text.matches("-->").count(), 1, "{text}");
        assert_eq!(recall(&text)[0].path.as_deref(), Some(path));
        let long = "d/".repeat(400);
        let m = mark(finding(&long, 1, "t"), None);
        assert_eq!(recall(&hidden_mark(&m))[0].path, None);
    }

    #[test]
    fn a_file_is_text_gone_or_unknown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rs"), "fn a() {}\n").unwrap();
        let big = std::fs::File::create(dir.path().join("big.bin")).unwrap();
        big.set_len(MAX_FILE + 1).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert_eq!(read(dir.path(), "a.rs"), Seen::Text("fn a() {}\n".into()));
        assert_eq!(read(dir.path(), "gone.rs"), Seen::Gone);
        assert_eq!(read(dir.path(), "big.bin"), Seen::Unknown);
        assert_eq!(read(dir.path(), "d"), Seen::Unknown);
        assert_eq!(read(dir.path(), "../a.rs"), Seen::Unknown);
    }

    #[test]
    fn findings_land_on_lines_ranges_files_or_the_body() {
        let d = diff::parse("diff --git a/a.rs b/a.rs\n--- a/a.rs\n+++ b/a.rs\n@@ -1,2 +1,3 @@\n x\n+y\n z\n@@ -10,1 +11,1 @@\n-p\n+q\n");
        let mut f = finding("a.rs", 3, "t");
        assert_eq!(place(&f, &d), Place::Lines { start: 3, end: 3 });
        f.start_line = Some(1);
        assert_eq!(place(&f, &d), Place::Lines { start: 1, end: 3 });
        f.line = 11;
        assert_eq!(
            place(&f, &d),
            Place::Lines { start: 11, end: 11 },
            "across hunks"
        );
        f.line = 7;
        assert_eq!(place(&f, &d), Place::File);
        assert_eq!(place(&finding("b.rs", 1, "t"), &d), Place::Body);
    }
}
