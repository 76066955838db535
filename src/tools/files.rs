//! The file tools: list_files, read_file, write_file, edit_file.

use std::io::Read;

use serde::Deserialize;

use super::truncate::truncate_head_tail;
use super::workspace::Workspace;
use super::ToolError;

/// Entries listed before `list_files` stops and says how many it left out.
const MAX_LIST_ENTRIES: usize = 2000;
/// Beyond this size a whole-file read is refused; a line range still works.
const MAX_WHOLE_FILE: u64 = 64 * 1024 * 1024;
/// How much of the start of a file is inspected for NUL bytes.
const BINARY_SNIFF: usize = 8 * 1024;

#[derive(Deserialize)]
pub(crate) struct ListArgs {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    max_depth: Option<usize>,
}

pub(crate) fn list_files(
    ws: &Workspace,
    args: ListArgs,
    max_bytes: usize,
) -> Result<String, ToolError> {
    let user = args.path.unwrap_or_else(|| ".".to_owned());
    let base = ws.resolve_existing(&user)?;
    if !base.is_dir() {
        return Err(ToolError(format!(
            "`{user}` is not a directory; use read_file to read a file"
        )));
    }
    let mut walk = ignore::WalkBuilder::new(&base);
    walk.hidden(false)
        .require_git(false)
        .follow_links(false)
        .max_depth(args.max_depth.map(|d| d.max(1)))
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git");
    let mut out = String::new();
    let mut shown = 0usize;
    let mut omitted = 0usize;
    for entry in walk.build() {
        let Ok(entry) = entry else { continue };
        if entry.depth() == 0 {
            continue;
        }
        let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
        if shown >= MAX_LIST_ENTRIES || out.len() >= max_bytes {
            omitted += 1;
            continue;
        }
        out.push_str(&ws.display(entry.path()));
        if is_dir {
            out.push('/');
        }
        out.push('\n');
        shown += 1;
    }
    if shown == 0 && omitted == 0 {
        return Ok(format!(
            "`{user}` is empty (or everything in it is ignored)"
        ));
    }
    if omitted > 0 {
        out.push_str(&format!(
            "[… {omitted} more entries not shown; list a subdirectory or lower max_depth …]\n"
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(crate) struct ReadArgs {
    path: String,
    #[serde(default)]
    start_line: Option<usize>,
    #[serde(default)]
    end_line: Option<usize>,
}

pub(crate) fn read_file(
    ws: &Workspace,
    args: ReadArgs,
    max_bytes: usize,
) -> Result<String, ToolError> {
    let user = &args.path;
    let file = ws.open_file(user)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let ranged = args.start_line.is_some() || args.end_line.is_some();
    if !ranged && size > MAX_WHOLE_FILE {
        return Err(ToolError(format!(
            "`{user}` is {size} bytes, too large to read whole; pass start_line/end_line or use search"
        )));
    }
    let mut reader = std::io::BufReader::new(file);
    let mut bytes = Vec::new();
    if ranged {
        let start = args.start_line.unwrap_or(1).max(1);
        let end = args.end_line.unwrap_or(usize::MAX);
        if end < start {
            return Err(ToolError(format!(
                "end_line {end} is before start_line {start}"
            )));
        }
        let mut line = Vec::new();
        let mut n = 0usize;
        loop {
            line.clear();
            let got = std::io::BufRead::read_until(&mut reader, b'\n', &mut line)
                .map_err(|e| ToolError(format!("cannot read `{user}`: {e}")))?;
            if got == 0 {
                break;
            }
            n += 1;
            if n >= start && n <= end {
                bytes.extend_from_slice(&line);
            }
            if n > end || bytes.len() > MAX_WHOLE_FILE as usize {
                break;
            }
        }
        if n < start {
            return Err(ToolError(format!(
                "`{user}` has only {n} lines; start_line {start} is past the end"
            )));
        }
    } else {
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| ToolError(format!("cannot read `{user}`: {e}")))?;
    }
    if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
        return Err(ToolError(format!(
            "`{user}` looks like a binary file (it contains NUL bytes); not shown"
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.is_empty() {
        return Ok(if ranged {
            "(no lines in that range)".to_owned()
        } else {
            format!("(`{user}` is empty)")
        });
    }
    Ok(truncate_head_tail(&text, max_bytes))
}

#[derive(Deserialize)]
pub(crate) struct WriteArgs {
    path: String,
    content: String,
}

pub(crate) fn write_file(ws: &Workspace, args: WriteArgs) -> Result<String, ToolError> {
    let existed = ws.resolve_existing(&args.path).is_ok();
    let real = ws.write_atomic(&args.path, args.content.as_bytes())?;
    Ok(format!(
        "{} `{}` ({} bytes)",
        if existed { "wrote" } else { "created" },
        ws.display(&real),
        args.content.len()
    ))
}

#[derive(Deserialize)]
pub(crate) struct EditArgs {
    path: String,
    old: String,
    new: String,
}

pub(crate) fn edit_file(ws: &Workspace, args: EditArgs) -> Result<String, ToolError> {
    let user = &args.path;
    if args.old.is_empty() {
        return Err(ToolError(
            "`old` is empty; give the exact text to replace (use write_file to create a file)"
                .to_owned(),
        ));
    }
    // Refuse before reading, so the model learns about `.git` rather than a later failure.
    ws.resolve_for_write(user)?;
    let mut file = ws.open_file(user)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| ToolError(format!("cannot read `{user}` as UTF-8 text: {e}")))?;
    let count = text.matches(&args.old).count();
    match count {
        0 => {
            return Err(ToolError(format!(
                "`old` was not found in `{user}` (0 matches); it must match the file exactly, whitespace included — read the file again"
            )))
        }
        1 => {}
        n => {
            return Err(ToolError(format!(
                "`old` is ambiguous in `{user}`: it matches {n} times; include more surrounding lines so it matches exactly once"
            )))
        }
    }
    let updated = text.replacen(&args.old, &args.new, 1);
    let real = ws.write_atomic(user, updated.as_bytes())?;
    Ok(format!(
        "edited `{}`: replaced 1 occurrence",
        ws.display(&real)
    ))
}
