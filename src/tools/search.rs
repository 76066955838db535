//! `search`: a regex over the workspace, honouring .gitignore, with ripgrep's own crates.
//!
//! Files are walked in parallel (like `rg`); results are kept in path order so the output is
//! deterministic, and memory stays bounded: past a limit only the matches of the
//! lexicographically smallest paths are kept, the rest are counted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use grep_regex::RegexMatcherBuilder;
use grep_searcher::{sinks, BinaryDetection, SearcherBuilder};
use ignore::{overrides::OverrideBuilder, WalkBuilder, WalkState};
use serde::Deserialize;

use super::workspace::Workspace;
use super::ToolError;

/// Matching lines printed at most (before the byte cap).
const MAX_MATCHES_SHOWN: usize = 500;
/// A matching line longer than this is cut (minified files would flood the output).
const MAX_LINE_CHARS: usize = 300;

#[derive(Deserialize)]
pub(crate) struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
}

struct Collected {
    /// Path → (line number, text), for the smallest paths only.
    kept: BTreeMap<PathBuf, Vec<(u64, String)>>,
    kept_lines: usize,
    total: usize,
    files_with_matches: usize,
}

pub(crate) fn search(
    ws: &Workspace,
    args: SearchArgs,
    max_bytes: usize,
) -> Result<String, ToolError> {
    if args.pattern.is_empty() {
        return Err(ToolError("`pattern` is empty".to_owned()));
    }
    let matcher = RegexMatcherBuilder::new()
        // Line-oriented matching lets the searcher use its fast paths, as `rg` does.
        .line_terminator(Some(b'\n'))
        .build(&args.pattern)
        .map_err(|e| {
            ToolError(format!(
                "invalid regex `{}`: {}",
                args.pattern,
                one_line(&e.to_string())
            ))
        })?;

    let user = args.path.clone().unwrap_or_else(|| ".".to_owned());
    let base = ws.resolve_existing(&user)?;

    let walk = walker(&base, args.glob.as_deref())?;

    // Keep a little more than can be shown, so the smallest paths are always complete.
    let keep_limit = MAX_MATCHES_SHOWN * 2;
    let collected = Mutex::new(Collected {
        kept: BTreeMap::new(),
        kept_lines: 0,
        total: 0,
        files_with_matches: 0,
    });

    walk.build_parallel().run(|| {
        let matcher = matcher.clone();
        let collected = &collected;
        let mut searcher = SearcherBuilder::new()
            .line_number(true)
            // Like `rg`: stop at the first NUL; binary files are not text to show a model.
            .binary_detection(BinaryDetection::quit(b'\x00'))
            .build();
        Box::new(move |entry| {
            let Ok(entry) = entry else {
                return WalkState::Continue;
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            let mut lines: Vec<(u64, String)> = Vec::new();
            let mut count = 0usize;
            let res = searcher.search_path(
                &matcher,
                entry.path(),
                sinks::Lossy(|lnum, line| {
                    count += 1;
                    if lines.len() < keep_limit {
                        lines.push((lnum, clip(line.trim_end_matches(['\n', '\r']))));
                    }
                    Ok(true)
                }),
            );
            if res.is_err() || count == 0 {
                return WalkState::Continue;
            }
            // A poisoned lock only means another worker panicked; the data is still usable.
            let mut c = collected.lock().unwrap_or_else(|p| p.into_inner());
            c.total += count;
            c.files_with_matches += 1;
            c.kept_lines += lines.len();
            c.kept.insert(entry.into_path(), lines);
            // Drop the largest paths while the rest alone exceeds the limit.
            while c.kept.len() > 1 {
                let Some((_, last)) = c.kept.last_key_value() else {
                    break;
                };
                let last_len = last.len();
                if c.kept_lines - last_len < keep_limit {
                    break;
                }
                c.kept.pop_last();
                c.kept_lines -= last_len;
            }
            WalkState::Continue
        })
    });

    let c = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    if c.total == 0 {
        return Ok(format!("no matches for `{}` in `{user}`", args.pattern));
    }
    Ok(render(ws, &c, max_bytes))
}

/// The parallel walk over `base`: every file, hidden ones too, `.gitignore` honoured, `.git`
/// skipped, links not followed, narrowed by `glob` when given.
fn walker(base: &std::path::Path, glob: Option<&str>) -> Result<WalkBuilder, ToolError> {
    let mut walk = WalkBuilder::new(base);
    walk.hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git");
    if let Some(glob) = glob.filter(|g| !g.is_empty()) {
        let mut ob = OverrideBuilder::new(base);
        ob.add(glob).map_err(|e| {
            ToolError(format!(
                "invalid glob `{glob}`: {}",
                one_line(&e.to_string())
            ))
        })?;
        let ov = ob.build().map_err(|e| {
            ToolError(format!(
                "invalid glob `{glob}`: {}",
                one_line(&e.to_string())
            ))
        })?;
        walk.overrides(ov);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(12);
    walk.threads(threads);

    Ok(walk)
}

/// The matches as `path:line:text`, smallest paths first, within the limits, and what was
/// left out.
fn render(ws: &Workspace, c: &Collected, max_bytes: usize) -> String {
    let mut out = String::new();
    let mut shown = 0usize;
    'outer: for (path, lines) in &c.kept {
        let shown_path = ws.display(path);
        for (lnum, text) in lines {
            if shown >= MAX_MATCHES_SHOWN || out.len() >= max_bytes {
                break 'outer;
            }
            out.push_str(&format!("{shown_path}:{lnum}:{text}\n"));
            shown += 1;
        }
    }
    if shown < c.total {
        out.push_str(&format!(
            "[… {} more matches not shown ({} matches in {} files in total); narrow the pattern, path or glob …]\n",
            c.total - shown,
            c.total,
            c.files_with_matches
        ));
    }
    out
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
