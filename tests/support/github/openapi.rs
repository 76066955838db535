//! The operations of GitHub's REST description (method + path template), so the fake can
//! flag any request that is not a real GitHub operation.
//!
//! `tests/fixtures/github/operations.tsv` is derived from `@octokit/openapi@23.0.2`
//! (see tests/fixtures/SOURCES.md).

const OPERATIONS: &str = include_str!("../../fixtures/github/operations.tsv");

/// Parameters whose values may contain `/` (git refs, file paths, `base...head`): GitHub's
/// router lets them span several path segments.
const MULTI_SEGMENT: &[&str] = &["{path}", "{ref}", "{basehead}", "{branch}"];

pub struct Operations {
    ops: Vec<(String, Vec<String>, String)>,
}

impl Operations {
    pub fn load() -> Operations {
        let ops = OPERATIONS
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut cols = l.split('\t');
                let method = cols.next()?.to_string();
                let path = cols.next()?;
                let id = cols.next().unwrap_or_default().to_string();
                let segs = path
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_string)
                    .collect();
                Some((method, segs, id))
            })
            .collect();
        Operations { ops }
    }

    /// The operationId documented for this method and (raw, undecoded) path, if any.
    pub fn find(&self, method: &str, path: &str) -> Option<&str> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // A trailing slash names the same resource (`contents/` is the root directory).
        let segs = match segs.split_last() {
            Some((last, init)) if last.is_empty() && !init.is_empty() => init,
            _ => &segs[..],
        };
        self.ops
            .iter()
            .find(|(m, t, _)| m.eq_ignore_ascii_case(method) && matches(t, segs))
            .map(|(_, _, id)| id.as_str())
    }
}

fn matches(template: &[String], segs: &[&str]) -> bool {
    match (template.split_first(), segs.split_first()) {
        (None, None) => true,
        // `GET /repos/{o}/{r}/contents` (no path) is the root directory.
        (Some((t, rest)), None) => rest.is_empty() && t == "{path}",
        (None, Some(_)) => false,
        (Some((t, trest)), Some((s, srest))) => {
            if MULTI_SEGMENT.contains(&t.as_str()) {
                (1..=segs.len())
                    .any(|n| segs[..n].iter().all(|s| !s.is_empty()) && matches(trest, &segs[n..]))
            } else if t.contains('{') {
                !s.is_empty() && matches(trest, srest)
            } else {
                t == s && matches(trest, srest)
            }
        }
    }
}
