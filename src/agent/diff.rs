//! Unified diffs as GitHub shows them: which files, and which right-side lines a review
//! comment may be attached to (added and context lines of a hunk).

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    /// The file's part of the diff, headers included.
    pub text: String,
    /// Right-side line numbers inside hunks.
    pub commentable: BTreeSet<u64>,
}

/// Split a unified diff (`git diff`, or GitHub's `application/vnd.github.diff`) by file.
pub fn parse(diff: &str) -> Vec<FileDiff> {
    let mut files: Vec<FileDiff> = Vec::new();
    let mut new_line: u64 = 0;
    let mut in_hunk = false;
    for line in diff.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if bare.starts_with("diff --git ") {
            files.push(FileDiff {
                path: path_from_header(bare).unwrap_or_default(),
                text: String::new(),
                commentable: BTreeSet::new(),
            });
            in_hunk = false;
        }
        let Some(file) = files.last_mut() else {
            continue;
        };
        file.text.push_str(line);
        if let Some(rest) = bare.strip_prefix("+++ ") {
            if let Some(p) = rest.strip_prefix("b/") {
                file.path = p.to_string();
            }
            in_hunk = false;
            continue;
        }
        if bare.starts_with("--- ") && !in_hunk {
            continue;
        }
        if let Some(rest) = bare.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            new_line = rest
                .split_whitespace()
                .find_map(|t| t.strip_prefix('+'))
                .and_then(|t| t.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            in_hunk = true;
            continue;
        }
        if !in_hunk {
            continue;
        }
        match bare.chars().next() {
            Some('+') | Some(' ') => {
                file.commentable.insert(new_line);
                new_line += 1;
            }
            // An empty line inside a hunk is a context line whose space was stripped.
            None => {
                file.commentable.insert(new_line);
                new_line += 1;
            }
            _ => {}
        }
    }
    files
}

/// `diff --git a/x b/x` → `x`.
fn path_from_header(header: &str) -> Option<String> {
    let rest = header.strip_prefix("diff --git ")?;
    let b = rest.rfind(" b/")?;
    Some(rest[b + 3..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/src/auth.rs b/src/auth.rs\nindex 1..2 100644\n--- a/src/auth.rs\n+++ b/src/auth.rs\n@@ -1,3 +1,4 @@\n pub fn check(p: &str) -> bool {\n-    p == \"admin\"\n+    let ok = verify(p);\n+    ok\n }\ndiff --git a/README.md b/README.md\nnew file mode 100644\n--- /dev/null\n+++ b/README.md\n@@ -0,0 +1,2 @@\n+# x\n+y\n";

    #[test]
    fn files_and_commentable_lines() {
        let f = parse(DIFF);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].path, "src/auth.rs");
        assert_eq!(
            f[0].commentable.iter().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(f[0].text.contains("verify(p)"));
        assert_eq!(f[1].path, "README.md");
        assert_eq!(
            f[1].commentable.iter().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
}
