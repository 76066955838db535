//! Real bare repositories: creation, commits made by the test, reads for the REST API, and
//! git's smart HTTP protocol served by `git http-backend` run as a CGI program.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "Fake GitHub"),
    ("GIT_AUTHOR_EMAIL", "noreply@github.com"),
    ("GIT_COMMITTER_NAME", "Fake GitHub"),
    ("GIT_COMMITTER_EMAIL", "noreply@github.com"),
];

/// A git command with no user or system configuration, so the developer's settings never
/// change what the fake serves.
fn cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(IDENTITY)
        .stdin(Stdio::null());
    c
}

/// Removes `path` from the index in `GIT_INDEX_FILE`: `update-index --force-remove` needs a
/// work tree, `--index-info` with mode 0 does not.
fn remove_from_index(bare: &Path, index: &Path, path: &str) -> bool {
    use std::io::Write;
    let Ok(mut child) = cmd(bare)
        .env("GIT_INDEX_FILE", index)
        .args(["update-index", "--index-info"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let line = format!("0 0000000000000000000000000000000000000000\t{path}\n");
    let wrote = child
        .stdin
        .take()
        .is_some_and(|mut s| s.write_all(line.as_bytes()).is_ok());
    child.wait().is_ok_and(|st| st.success()) && wrote
}

/// Runs git with `GIT_INDEX_FILE=index`, `input` on its stdin; its stdout. Panics with git's
/// stderr (test setup must not fail quietly).
fn piped(bare: &Path, index: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = cmd(bare)
        .env("GIT_INDEX_FILE", index)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("git runs");
    writer.join().expect("writer").expect("git reads its input");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git and returns stdout; panics with git's stderr (test setup must not fail quietly).
pub fn run(dir: &Path, args: &[&str]) -> String {
    let out = cmd(dir).args(args).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git; `None` when it fails (a missing ref or path is an answer, not a bug).
pub fn try_run(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = cmd(dir).args(args).output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// `root/owner/name.git`, a bare repository whose `main` holds `files` in one commit.
pub fn create_bare(root: &Path, full_name: &str, files: &[(&str, &str)]) -> PathBuf {
    let bare = root.join(format!("{full_name}.git"));
    std::fs::create_dir_all(&bare).expect("mkdir bare repo");
    run(&bare, &["init", "-q", "--bare", "-b", "main"]);
    // GitHub serves any commit reachable from a ref when a client asks for it by sha.
    run(
        &bare,
        &["config", "uploadpack.allowReachableSHA1InWant", "true"],
    );
    let changes: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(*c))).collect();
    commit(&bare, "main", None, &changes, "Initial commit");
    bare
}

/// Commits `changes` (path → new content, `None` deletes) on top of `parent_ref` (or as a root
/// commit) and points `refs/heads/branch` at it. Works on the bare repository through a
/// temporary index, so no clone is needed. Returns the new commit's sha.
pub fn commit(
    bare: &Path,
    branch: &str,
    parent_ref: Option<&str>,
    changes: &[(&str, Option<&str>)],
    message: &str,
) -> String {
    let index = tempfile::NamedTempFile::new().expect("temp index");
    let with_index = |args: &[&str]| {
        let out = cmd(bare)
            .env("GIT_INDEX_FILE", index.path())
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let parent = parent_ref.map(|r| rev_parse(bare, r).unwrap_or_else(|| panic!("no ref {r}")));
    match &parent {
        Some(p) => with_index(&["read-tree", p]),
        None => with_index(&["read-tree", "--empty"]),
    };
    // The blobs in one `hash-object --stdin-paths`, the index in one `update-index -z
    // --index-info` (mode 0 removes a path): a repository of 100,000 files takes seconds.
    let blobs = tempfile::tempdir().expect("temp blobs");
    let mut paths = String::new();
    for (i, (_, content)) in changes.iter().enumerate() {
        if let Some(content) = content {
            let file = blobs.path().join(i.to_string());
            std::fs::write(&file, content).expect("write blob");
            paths.push_str(file.to_str().expect("utf-8 temp path"));
            paths.push('\n');
        }
    }
    let shas = piped(
        bare,
        index.path(),
        &["hash-object", "-w", "--stdin-paths"],
        paths.as_bytes(),
    );
    let mut shas = shas.lines();
    let mut info = Vec::new();
    for (path, content) in changes {
        let entry = match content {
            Some(_) => format!("100644 {}", shas.next().expect("one sha per blob")),
            None => "0 0000000000000000000000000000000000000000".to_string(),
        };
        info.extend_from_slice(format!("{entry}\t{path}\0").as_bytes());
    }
    piped(
        bare,
        index.path(),
        &["update-index", "-z", "--index-info"],
        &info,
    );
    let tree = with_index(&["write-tree"]);
    let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
    if let Some(p) = &parent {
        args.extend(["-p", p.as_str()]);
    }
    let sha = with_index(&args);
    run(bare, &["update-ref", &format!("refs/heads/{branch}"), &sha]);
    sha
}

/// The commit a ref or sha names.
pub fn rev_parse(bare: &Path, rev: &str) -> Option<String> {
    let out = try_run(
        bare,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )?;
    Some(String::from_utf8_lossy(&out).trim().to_string())
}

/// Every ref with its target: `("refs/heads/main", sha)`.
pub fn refs(bare: &Path) -> Vec<(String, String)> {
    run(bare, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, s)| (r.to_string(), s.to_string()))
        .collect()
}

pub fn files(bare: &Path, rev: &str) -> BTreeMap<String, String> {
    let list = run(bare, &["ls-tree", "-r", "-z", "--name-only", rev]);
    list.split('\0')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let content = run(bare, &["cat-file", "blob", &format!("{rev}:{p}")]);
            (p.to_string(), content)
        })
        .collect()
}

pub enum Entry {
    File { sha: String, content: Vec<u8> },
    Dir(Vec<(String, String, String)>),
}

/// What `rev:path` is: a file's bytes, or a directory's `(type, sha, name)` entries.
pub fn entry(bare: &Path, rev: &str, path: &str) -> Option<Entry> {
    let spec = format!("{rev}:{path}");
    let kind = try_run(bare, &["cat-file", "-t", &spec])?;
    let sha = String::from_utf8_lossy(&try_run(bare, &["rev-parse", &spec])?)
        .trim()
        .to_string();
    match String::from_utf8_lossy(&kind).trim() {
        "blob" => Some(Entry::File {
            sha,
            content: try_run(bare, &["cat-file", "blob", &spec])?,
        }),
        "tree" => {
            let list = try_run(bare, &["ls-tree", "-z", &spec])?;
            let entries = String::from_utf8_lossy(&list)
                .split('\0')
                .filter_map(|l| {
                    let (meta, name) = l.split_once('\t')?;
                    let mut m = meta.split(' ');
                    let _mode = m.next()?;
                    let kind = m.next()?.to_string();
                    let sha = m.next()?.to_string();
                    Some((kind, sha, name.to_string()))
                })
                .collect();
            Some(Entry::Dir(entries))
        }
        _ => None,
    }
}

/// The diff GitHub shows for a pull request: from the merge base of base and head to head.
pub fn pr_diff(bare: &Path, base: &str, head: &str) -> Option<String> {
    let out = try_run(
        bare,
        &[
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            &format!("{base}...{head}"),
        ],
    )?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Commits reachable from head and not from base.
pub fn commits_between(bare: &Path, base: &str, head: &str) -> usize {
    try_run(bare, &["rev-list", "--count", &format!("{base}..{head}")])
        .and_then(|o| String::from_utf8_lossy(&o).trim().parse().ok())
        .unwrap_or(0)
}

/// Serves one smart-HTTP request (`info/refs`, `git-upload-pack`, `git-receive-pack`) by
/// running `git http-backend` with the CGI environment, streaming the request body to it and
/// its output (after the CGI header block) back.
pub async fn http_backend(
    root: &Path,
    method: &str,
    path_info: &str,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut child = match tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path_info)
        .env("REQUEST_METHOD", method)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", header("content-length"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        // http-backend enables receive-pack only for an authenticated user.
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("http-backend: {e}"),
            )
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Dropping stdin closes it: the CGI sees the end of the request.
    });
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut builder = Response::builder().status(StatusCode::OK);
    loop {
        let mut line = String::new();
        match out.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else if let Ok(v) = HeaderValue::from_str(value) {
            builder = builder.header(name, v);
        }
    }
    // The child lives in the stream's state so it is reaped (or killed) with it; a read error
    // ends the stream after being reported once.
    let stream = futures::stream::unfold(Some((out, child)), |state| async move {
        let (mut out, mut child) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match out.read(&mut buf).await {
            Ok(0) => {
                let _ = child.wait().await;
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    Some((out, child)),
                ))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    builder
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

pub fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = Response::new(Body::from(text.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Writes a blob; returns its sha (the Git Data API's `POST …/git/blobs`).
pub fn write_blob(bare: &Path, bytes: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().expect("temp blob");
    std::fs::write(file.path(), bytes).expect("write blob");
    let path = file.path().to_str().expect("utf-8 temp path");
    run(bare, &["hash-object", "-w", path]).trim().to_string()
}

/// A tree: `base` (a tree or commit) with `entries` (path, mode, blob sha; `None` removes)
/// applied, as `POST …/git/trees` does. `None` when base or a sha does not exist.
pub fn write_tree(
    bare: &Path,
    base: Option<&str>,
    entries: &[(String, String, Option<String>)],
) -> Option<String> {
    let index = tempfile::NamedTempFile::new().expect("temp index");
    let git = |args: &[&str]| {
        let out = cmd(bare)
            .env("GIT_INDEX_FILE", index.path())
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match base {
        Some(b) => git(&["read-tree", b])?,
        None => git(&["read-tree", "--empty"])?,
    };
    for (path, mode, sha) in entries {
        match sha {
            Some(sha) => git(&[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("{mode},{sha},{path}"),
            ])?,
            None => remove_from_index(bare, index.path(), path).then(String::new)?,
        };
    }
    git(&["write-tree"])
}

/// A commit of `tree` with `parents`; `author` is (name, email) and also commits.
pub fn commit_tree(
    bare: &Path,
    tree: &str,
    parents: &[String],
    message: &str,
    author: (&str, &str),
) -> Option<String> {
    let mut args = vec!["commit-tree", tree, "-m", message];
    for p in parents {
        args.extend(["-p", p.as_str()]);
    }
    let out = cmd(bare)
        .env("GIT_AUTHOR_NAME", author.0)
        .env("GIT_AUTHOR_EMAIL", author.1)
        .env("GIT_COMMITTER_NAME", author.0)
        .env("GIT_COMMITTER_EMAIL", author.1)
        .args(&args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The type of an object (`blob`, `tree`, `commit`), `None` when it does not exist.
pub fn object_type(bare: &Path, sha: &str) -> Option<String> {
    try_run(bare, &["cat-file", "-t", sha]).map(|o| String::from_utf8_lossy(&o).trim().to_string())
}
