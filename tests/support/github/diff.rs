//! Unified diffs as GitHub reads them: files, their patches, and the lines a review comment
//! may be attached to on each side.

use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub struct FileDiff {
    pub path: String,
    /// added | removed | modified
    pub status: &'static str,
    pub additions: u64,
    pub deletions: u64,
    /// From the first `@@` on, as in the `patch` field of `GET …/pulls/{n}/files`.
    pub patch: String,
    /// Line numbers in the new file that appear in a hunk (added or context).
    pub right: BTreeSet<u64>,
    /// Line numbers in the old file that appear in a hunk (removed or context).
    pub left: BTreeSet<u64>,
    /// Lines of the patch after the first `@@` header: the range of a legacy `position`.
    pub positions: u64,
}

pub fn parse(diff: &str) -> Vec<FileDiff> {
    let mut files = Vec::new();
    for section in diff.split("diff --git ").skip(1) {
        let (header, patch) = match section.find("\n@@") {
            Some(i) => (&section[..i], &section[i + 1..]),
            None => (section, ""),
        };
        let mut status = "modified";
        let mut old = None;
        let mut new = None;
        for l in header.lines() {
            if l.starts_with("new file mode") {
                status = "added";
            } else if l.starts_with("deleted file mode") {
                status = "removed";
            } else if let Some(p) = l.strip_prefix("--- a/") {
                old = Some(p.to_string());
            } else if let Some(p) = l.strip_prefix("+++ b/") {
                new = Some(p.to_string());
            }
        }
        // Binary or mode-only changes have no ---/+++ lines: take the name from `a/X b/X`.
        let first = header.lines().next().unwrap_or_default();
        let fallback = first
            .rsplit_once(" b/")
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        let path = new.or(old).unwrap_or(fallback);
        let mut f = FileDiff {
            path,
            status,
            additions: 0,
            deletions: 0,
            patch: patch.trim_end_matches('\n').to_string(),
            right: BTreeSet::new(),
            left: BTreeSet::new(),
            positions: 0,
        };
        let (mut o, mut n) = (0u64, 0u64);
        for (i, l) in patch.lines().enumerate() {
            if i > 0 {
                f.positions += 1;
            }
            if let Some(h) = l.strip_prefix("@@ ") {
                // @@ -a,b +c,d @@
                let mut parts = h.split(' ');
                o = start(parts.next().unwrap_or("-0"));
                n = start(parts.next().unwrap_or("+0"));
            } else if l.starts_with('+') {
                f.right.insert(n);
                f.additions += 1;
                n += 1;
            } else if l.starts_with('-') {
                f.left.insert(o);
                f.deletions += 1;
                o += 1;
            } else if l.starts_with(' ') || l.is_empty() {
                f.right.insert(n);
                f.left.insert(o);
                n += 1;
                o += 1;
            }
        }
        files.push(f);
    }
    files
}

fn start(range: &str) -> u64 {
    range[1..]
        .split(',')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
