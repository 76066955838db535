//! The tool layer through its public API, on real directories, git repos and bubblewrap.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use equitr_coder::tools::{
    truncate_head_tail, Access, SandboxMode, SandboxStatus, ToolOutcome, Toolbox, ToolboxOptions,
};
use serde_json::json;

fn toolbox(root: &Path) -> Toolbox {
    Toolbox::new(root, ToolboxOptions::default()).unwrap()
}

fn toolbox_with(root: &Path, f: impl FnOnce(&mut ToolboxOptions)) -> Toolbox {
    let mut o = ToolboxOptions::default();
    f(&mut o);
    Toolbox::new(root, o).unwrap()
}

async fn call(tb: &Toolbox, name: &str, args: serde_json::Value) -> ToolOutcome {
    tb.call(name, &args.to_string()).await
}

#[track_caller]
fn assert_err(o: &ToolOutcome, needle: &str) {
    assert!(
        o.is_error,
        "expected an error containing {needle:?}, got {o:?}"
    );
    assert!(
        o.content.contains(needle),
        "expected {needle:?} in {:?}",
        o.content
    );
    assert!(
        !o.content.trim().contains('\n'),
        "one line: {:?}",
        o.content
    );
}

#[track_caller]
fn assert_ok(o: &ToolOutcome) {
    assert!(!o.is_error, "expected success, got {o:?}");
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(st.status.success(), "git {args:?}: {st:?}");
}

/// A small git repository with a .gitignore, a source file and an ignored file.
fn repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("src")).unwrap();
    std::fs::write(p.join(".gitignore"), "target/\n*.log\n").unwrap();
    std::fs::write(
        p.join("src/main.rs"),
        "fn main() {\n    println!(\"needle\");\n}\n",
    )
    .unwrap();
    std::fs::write(p.join("README.md"), "# demo\nneedle in readme\n").unwrap();
    std::fs::create_dir_all(p.join("target")).unwrap();
    std::fs::write(p.join("target/out.txt"), "needle ignored\n").unwrap();
    std::fs::write(p.join("debug.log"), "needle ignored\n").unwrap();
    git(p, &["init", "-q"]);
    git(p, &["add", "."]);
    git(p, &["commit", "-qm", "init"]);
    d
}

fn bwrap_works() -> bool {
    let tb = toolbox(&std::env::temp_dir());
    tb.sandbox_status() == SandboxStatus::Available
}

// ---------- construction and specs ----------

#[tokio::test]
async fn new_canonicalises_and_requires_a_directory() {
    let d = repo();
    let tb = toolbox(&d.path().join("src/.."));
    assert_eq!(tb.root(), d.path().canonicalize().unwrap());
    assert!(Toolbox::new(&d.path().join("README.md"), ToolboxOptions::default()).is_err());
    assert!(Toolbox::new(&d.path().join("missing"), ToolboxOptions::default()).is_err());
}

#[tokio::test]
async fn specs_follow_access() {
    let d = repo();
    let ro = toolbox_with(d.path(), |o| o.access = Access::ReadOnly);
    let names: Vec<_> = ro.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["list_files", "read_file", "search"]);
    assert!(ro.handles("search") && !ro.handles("write_file"));
    let o = call(&ro, "write_file", json!({"path": "x", "content": "y"})).await;
    assert_err(&o, "read-only");
    assert!(!d.path().join("x").exists());

    let rw = toolbox(d.path());
    let specs = rw.specs();
    let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "list_files",
            "read_file",
            "search",
            "write_file",
            "edit_file",
            "run_command"
        ]
    );
    for s in &specs {
        assert_eq!(s.parameters["type"], "object", "{}", s.name);
        assert!(!s.description.is_empty());
    }
    assert!(!rw.handles("nope"));
    assert_err(&call(&rw, "nope", json!({})).await, "unknown tool `nope`");
}

#[tokio::test]
async fn bad_arguments_are_errors_for_the_model() {
    let d = repo();
    let tb = toolbox(d.path());
    assert_err(
        &tb.call("read_file", "{not json").await,
        "invalid arguments",
    );
    assert_err(&tb.call("read_file", "{}").await, "missing field `path`");
    assert_err(
        &tb.call("edit_file", r#"{"path": 3}"#).await,
        "invalid arguments",
    );
    assert_err(&tb.call("run_command", "[]").await, "invalid arguments");
    assert_err(
        &call(&tb, "search", json!({"pattern": "("})).await,
        "invalid regex",
    );
}

// ---------- path confinement ----------

#[tokio::test]
async fn path_escapes_are_refused() {
    let d = repo();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let p = d.path();
    symlink("/etc/passwd", p.join("passwd_link")).unwrap();
    symlink("/etc", p.join("etc_link")).unwrap();
    symlink(outside.path(), p.join("out_dir")).unwrap();
    let tb = toolbox(p);

    for (path, needle) in [
        ("../x", "outside the workspace"),
        ("src/../../x", "outside the workspace"),
        ("/etc/passwd", "outside the workspace"),
        ("passwd_link", "outside the workspace"),
        ("etc_link/passwd", "outside the workspace"),
        ("out_dir/secret.txt", "outside the workspace"),
        ("/proc/self/environ", "special filesystem"),
        ("/sys/kernel/hostname", "special filesystem"),
        ("src/main.rs\0", "NUL byte"),
        ("", "empty"),
        ("no\nsuch\nfile", "does not exist"),
    ] {
        let o = call(&tb, "read_file", json!({ "path": path })).await;
        assert_err(&o, needle);
    }
    // Escapes through a path that does not exist yet are judged too.
    for path in [
        "missing/../../x",
        "../newfile",
        "out_dir/new.txt",
        "etc_link/new",
    ] {
        let o = call(&tb, "write_file", json!({ "path": path, "content": "x" })).await;
        assert!(o.is_error, "{path}: {o:?}");
    }
    assert!(!outside.path().join("new.txt").exists());
    // Listing and searching outside are refused the same way.
    assert_err(
        &call(&tb, "list_files", json!({"path": "out_dir"})).await,
        "outside",
    );
    assert_err(
        &call(&tb, "search", json!({"pattern": "root", "path": "/etc"})).await,
        "outside",
    );
    // Search does not follow symlinks out of the tree (passwd_link, etc_link, out_dir).
    let o = call(&tb, "search", json!({"pattern": "root:|secret"})).await;
    assert!(o.content.starts_with("no matches"), "{}", o.content);
    // A path inside the root given absolutely is fine.
    let abs = p.canonicalize().unwrap().join("README.md");
    assert_ok(&call(&tb, "read_file", json!({"path": abs.to_str().unwrap()})).await);
    // And `..` that stays inside is fine.
    assert_ok(&call(&tb, "read_file", json!({"path": "src/../README.md"})).await);
}

#[tokio::test]
async fn writes_never_follow_symlinks_out() {
    let d = repo();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim.txt");
    std::fs::write(&target, "original").unwrap();
    let p = d.path();
    symlink(&target, p.join("victim_link")).unwrap();
    // A dangling link pointing outside: writing must not create its target.
    let dangling_target = outside.path().join("created.txt");
    symlink(&dangling_target, p.join("dangling")).unwrap();
    let tb = toolbox(p);

    let o = call(
        &tb,
        "write_file",
        json!({"path": "victim_link", "content": "pwned"}),
    )
    .await;
    assert_err(&o, "outside the workspace");
    let o = call(
        &tb,
        "edit_file",
        json!({"path": "victim_link", "old": "original", "new": "pwned"}),
    )
    .await;
    assert!(o.is_error, "{o:?}");
    let o = call(
        &tb,
        "write_file",
        json!({"path": "dangling", "content": "pwned"}),
    )
    .await;
    assert_err(&o, "broken symbolic link");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original");
    assert!(!dangling_target.exists());
}

#[tokio::test]
async fn writing_into_git_is_refused() {
    let d = repo();
    let tb = toolbox(d.path());
    for path in [".git/config", ".git/hooks/pre-commit", ".git", "sub/.git/x"] {
        let o = call(&tb, "write_file", json!({"path": path, "content": "x"})).await;
        assert_err(&o, ".git");
    }
    let o = call(
        &tb,
        "edit_file",
        json!({"path": ".git/HEAD", "old": "ref", "new": "x"}),
    )
    .await;
    assert_err(&o, ".git");
    assert!(!d.path().join(".git/hooks/pre-commit").exists());
    // Reading .git is allowed (the model may want to look at config).
    assert_ok(&call(&tb, "read_file", json!({"path": ".git/HEAD"})).await);
}

// ---------- file tools ----------

#[tokio::test]
async fn write_creates_dirs_atomically_and_keeps_mode() {
    let d = repo();
    let tb = toolbox(d.path());
    let o = call(
        &tb,
        "write_file",
        json!({"path": "a/b/c.txt", "content": "hello\n"}),
    )
    .await;
    assert_ok(&o);
    assert!(o.content.contains("created `a/b/c.txt`"), "{}", o.content);
    assert_eq!(
        std::fs::read_to_string(d.path().join("a/b/c.txt")).unwrap(),
        "hello\n"
    );

    use std::os::unix::fs::PermissionsExt;
    let script = d.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ok(
        &call(
            &tb,
            "write_file",
            json!({"path": "run.sh", "content": "#!/bin/sh\necho hi\n"}),
        )
        .await,
    );
    let mode = std::fs::metadata(&script).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);

    // No temporary files are left anywhere.
    for dir in [d.path().to_path_buf(), d.path().join("a/b")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "left over: {name}");
        }
    }
    // A directory cannot be overwritten.
    assert_err(
        &call(&tb, "write_file", json!({"path": "src", "content": "x"})).await,
        "is a directory",
    );
}

#[tokio::test]
async fn edit_file_exact_missing_and_ambiguous() {
    let d = repo();
    std::fs::write(d.path().join("f.txt"), "alpha\nbeta\nbeta\n").unwrap();
    let tb = toolbox(d.path());
    let o = call(
        &tb,
        "edit_file",
        json!({"path": "f.txt", "old": "gamma", "new": "x"}),
    )
    .await;
    assert_err(&o, "not found");
    assert!(o.content.contains("0 matches"));
    let o = call(
        &tb,
        "edit_file",
        json!({"path": "f.txt", "old": "beta", "new": "x"}),
    )
    .await;
    assert_err(&o, "ambiguous");
    assert!(o.content.contains("2 times"));
    let o = call(
        &tb,
        "edit_file",
        json!({"path": "f.txt", "old": "alpha\nbeta", "new": "ALPHA\nbeta"}),
    )
    .await;
    assert_ok(&o);
    assert_eq!(
        std::fs::read_to_string(d.path().join("f.txt")).unwrap(),
        "ALPHA\nbeta\nbeta\n"
    );
    let o = call(
        &tb,
        "edit_file",
        json!({"path": "nope.txt", "old": "a", "new": "b"}),
    )
    .await;
    assert_err(&o, "does not exist");
}

#[tokio::test]
async fn read_file_truncates_ranges_and_refuses_binary() {
    let d = repo();
    let text: String = (1..=10_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(d.path().join("big.txt"), &text).unwrap();
    std::fs::write(d.path().join("bin.dat"), b"\x7fELF\0\0\x01binary").unwrap();
    let tb = toolbox_with(d.path(), |o| o.max_read_bytes = 1000);

    let o = call(&tb, "read_file", json!({"path": "big.txt"})).await;
    assert_ok(&o);
    assert!(
        o.content.starts_with("line 1\nline 2\n"),
        "{}",
        &o.content[..50]
    );
    assert!(o.content.ends_with("line 10000\n"));
    assert!(o.content.contains(" lines / "), "marker: {}", o.content);
    assert!(o.content.contains(" bytes omitted …]"));
    assert!(o.content.len() < 1200);

    let o = call(
        &tb,
        "read_file",
        json!({"path": "big.txt", "start_line": 5, "end_line": 7}),
    )
    .await;
    assert_eq!(o.content, "line 5\nline 6\nline 7\n");
    let o = call(
        &tb,
        "read_file",
        json!({"path": "big.txt", "start_line": 20000}),
    )
    .await;
    assert_err(&o, "past the end");

    assert_err(
        &call(&tb, "read_file", json!({"path": "bin.dat"})).await,
        "binary",
    );
    assert_err(
        &call(&tb, "read_file", json!({"path": "src"})).await,
        "is a directory",
    );
    assert_err(
        &call(&tb, "read_file", json!({"path": "missing.txt"})).await,
        "does not exist",
    );

    // A FIFO must not hang the read.
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let o = tokio::time::timeout(
        Duration::from_secs(5),
        call(&tb, "read_file", json!({"path": "fifo"})),
    )
    .await
    .unwrap();
    assert_err(&o, "not a regular file");
}

#[test]
fn truncate_head_tail_marker() {
    let text: String = (0..100).map(|i| format!("{i:03}\n")).collect();
    let out = truncate_head_tail(&text, 40);
    assert!(out.starts_with("000\n001\n"));
    assert!(out.ends_with("098\n099\n"));
    assert!(out.contains("[… 90 lines / 360 bytes omitted …]"), "{out}");
    assert_eq!(truncate_head_tail("short", 40), "short");
}

#[tokio::test]
async fn list_files_honours_gitignore() {
    let d = repo();
    let tb = toolbox(d.path());
    let o = call(&tb, "list_files", json!({})).await;
    assert_ok(&o);
    assert_eq!(o.content, ".gitignore\nREADME.md\nsrc/\nsrc/main.rs\n");
    let o = call(&tb, "list_files", json!({"path": ".", "max_depth": 1})).await;
    assert_eq!(o.content, ".gitignore\nREADME.md\nsrc/\n");
    let o = call(&tb, "list_files", json!({"path": "src"})).await;
    assert_eq!(o.content, "src/main.rs\n");
    assert_err(
        &call(&tb, "list_files", json!({"path": "README.md"})).await,
        "not a directory",
    );

    for i in 0..3000 {
        std::fs::write(d.path().join(format!("src/f{i:04}.rs")), "").unwrap();
    }
    let o = call(&tb, "list_files", json!({"path": "src"})).await;
    assert!(
        o.content.contains("more entries not shown"),
        "{}",
        &o.content[o.content.len() - 200..]
    );
}

#[tokio::test]
async fn search_honours_gitignore_and_caps() {
    let d = repo();
    let tb = toolbox_with(d.path(), |o| o.max_output_bytes = 2000);
    let o = call(&tb, "search", json!({"pattern": "needle"})).await;
    assert_ok(&o);
    assert_eq!(
        o.content,
        "README.md:2:needle in readme\nsrc/main.rs:2:    println!(\"needle\");\n"
    );
    let o = call(&tb, "search", json!({"pattern": "needle", "glob": "*.rs"})).await;
    assert_eq!(o.content, "src/main.rs:2:    println!(\"needle\");\n");
    let o = call(&tb, "search", json!({"pattern": "needle", "path": "src"})).await;
    assert_eq!(o.content, "src/main.rs:2:    println!(\"needle\");\n");
    let o = call(&tb, "search", json!({"pattern": "(?i)NEEDLE IN"})).await;
    assert_eq!(o.content, "README.md:2:needle in readme\n");
    let o = call(&tb, "search", json!({"pattern": "zzz_nothing"})).await;
    assert!(!o.is_error && o.content.contains("no matches"));

    let many: String = (0..5000).map(|i| format!("match {i}\n")).collect();
    std::fs::write(d.path().join("many.txt"), many).unwrap();
    let o = call(&tb, "search", json!({"pattern": "^match"})).await;
    assert_ok(&o);
    assert!(o.content.starts_with("many.txt:1:match 0\n"));
    assert!(o.content.len() < 2200, "{}", o.content.len());
    assert!(
        o.content
            .contains("more matches not shown (5000 matches in 1 files in total)"),
        "{}",
        o.content
    );
}

// ---------- run_command ----------

#[tokio::test]
async fn sandbox_basics_workspace_writable_git_and_outside_not() {
    if !bwrap_works() {
        eprintln!("skipping: bubblewrap does not work here");
        return;
    }
    let d = repo();
    let tb = toolbox(d.path());
    let o = call(
        &tb,
        "run_command",
        json!({"command": "echo hello > made.txt && cat made.txt && pwd"}),
    )
    .await;
    assert_ok(&o);
    assert!(o.content.starts_with("exit code: 0\n"), "{}", o.content);
    assert!(o.content.contains("hello"));
    assert!(o
        .content
        .contains(d.path().canonicalize().unwrap().to_str().unwrap()));
    assert!(d.path().join("made.txt").exists());

    let o = call(
        &tb,
        "run_command",
        json!({"command": "echo x >> .git/config"}),
    )
    .await;
    assert!(o.is_error, "{o:?}");
    assert!(o.content.contains("Read-only file system"), "{}", o.content);
    assert!(!std::fs::read_to_string(d.path().join(".git/config"))
        .unwrap()
        .contains('x'));

    let home_marker = format!("/root/equitr-sandbox-test-{}", std::process::id());
    let o = call(
        &tb,
        "run_command",
        json!({"command": format!("touch /etc/equitr-x; touch {home_marker}; echo done")}),
    )
    .await;
    assert!(o.content.contains("Read-only file system"), "{}", o.content);
    assert!(!Path::new("/etc/equitr-x").exists());
    assert!(!Path::new(&home_marker).exists());

    // No capabilities, even when we run as root: otherwise `.git` could be remounted
    // read-write or unmounted from inside.
    let o = call(
        &tb,
        "run_command",
        json!({"command": "grep CapEff /proc/self/status; \
        mount -o remount,rw,bind .git; umount .git; echo x > .git/pwned"}),
    )
    .await;
    assert!(
        o.content.contains("CapEff:\t0000000000000000"),
        "{}",
        o.content
    );
    assert!(!d.path().join(".git/pwned").exists(), "{}", o.content);

    // Homes and /run (credentials, docker/postgres sockets) are hidden.
    let o = call(
        &tb,
        "run_command",
        json!({"command": "ls -A /root /home /run"}),
    )
    .await;
    assert_eq!(
        o.content, "exit code: 0\n--- stdout ---\n/home:\n\n/root:\n\n/run:\n",
        "{}",
        o.content
    );

    let o = call(&tb, "run_command", json!({"command": "exit 3"})).await;
    assert!(o.is_error && o.content.starts_with("exit code: 3"), "{o:?}");
    let o = call(
        &tb,
        "run_command",
        json!({"command": "echo out; echo err >&2"}),
    )
    .await;
    assert_eq!(
        o.content,
        "exit code: 0\n--- stdout ---\nout\n--- stderr ---\nerr\n"
    );
}

#[tokio::test]
async fn sandbox_has_no_network() {
    if !bwrap_works() {
        eprintln!("skipping: bubblewrap does not work here");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let d = repo();
    let tb = toolbox(d.path());
    let cmd = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED");
    let o = call(&tb, "run_command", json!({ "command": cmd })).await;
    assert!(o.is_error, "{o:?}");
    assert!(!o.content.contains("CONNECTED"), "{}", o.content);
    // The same command bare does connect: the test itself is sound.
    let bare = toolbox_with(d.path(), |o| o.sandbox = SandboxMode::None);
    let o = call(&bare, "run_command", json!({ "command": cmd })).await;
    assert!(o.content.contains("CONNECTED"), "{}", o.content);
    // Only loopback exists, and it is not the host's.
    let o = call(
        &tb,
        "run_command",
        json!({"command": "cat /proc/net/dev | tail -n +3 | cut -d: -f1"}),
    )
    .await;
    assert_eq!(
        o.content
            .trim_start_matches("exit code: 0\n--- stdout ---\n")
            .trim(),
        "lo"
    );
}

#[tokio::test]
async fn commands_see_no_secrets_in_either_mode() {
    let var = format!("EQUITR_TEST_SECRET_{}", std::process::id());
    // Unique name: no other test reads it, so setting it here cannot disturb them.
    std::env::set_var(&var, "sk-test-secret");
    let d = repo();
    let mut modes = vec![SandboxMode::None];
    if bwrap_works() {
        modes.push(SandboxMode::Bubblewrap);
    }
    for mode in modes {
        let tb = toolbox_with(d.path(), |o| o.sandbox = mode);
        let o = call(&tb, "run_command", json!({"command": "env"})).await;
        assert_ok(&o);
        assert!(!o.content.contains(&var), "{mode:?}: {}", o.content);
        assert!(!o.content.contains("sk-test-secret"));
        assert!(o.content.contains("PATH=/usr/local/sbin:"), "{}", o.content);
        let names: Vec<&str> = o
            .content
            .lines()
            .skip(2)
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| !["PWD", "SHLVL", "_", "OLDPWD"].contains(k))
            .collect();
        let mut names = names;
        names.sort_unstable();
        let expected: &[&str] = match mode {
            SandboxMode::Bubblewrap => &["HOME", "LANG", "PATH", "TMPDIR"],
            SandboxMode::None => &["HOME", "LANG", "PATH"],
        };
        assert_eq!(names, expected, "{mode:?}");
    }
    std::env::remove_var(&var);
}

fn leftover_processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let s = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if s.contains(marker) && !s.contains("bash -c") && !s.contains("bwrap") {
                found.push(format!("{}: {s}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

async fn timeout_kills_tree(mode: SandboxMode) {
    let d = repo();
    let tb = toolbox_with(d.path(), |o| {
        o.sandbox = mode;
        o.command_timeout = Duration::from_secs(1);
    });
    // A distinctive sleep length identifies our processes in the host's /proc.
    let secs = 900_000 + (std::process::id() % 10_000) * 10 + mode as u32;
    let cmd = format!("sleep {secs} & (sleep {secs} &) ; sleep {secs}");
    let start = std::time::Instant::now();
    let o = call(&tb, "run_command", json!({ "command": cmd })).await;
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(o.is_error);
    assert!(o.content.contains("timed out after 1 s"), "{}", o.content);
    // Give the kernel a moment to reap.
    let marker = format!("sleep {secs}");
    for _ in 0..50 {
        if leftover_processes(&marker).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{mode:?}: left over: {:?}", leftover_processes(&marker));
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_sandboxed() {
    if !bwrap_works() {
        eprintln!("skipping: bubblewrap does not work here");
        return;
    }
    timeout_kills_tree(SandboxMode::Bubblewrap).await;
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_bare() {
    timeout_kills_tree(SandboxMode::None).await;
}

#[tokio::test]
async fn background_processes_do_not_outlive_the_command() {
    let d = repo();
    let mut modes = vec![SandboxMode::None];
    if bwrap_works() {
        modes.push(SandboxMode::Bubblewrap);
    }
    for mode in modes {
        let tb = toolbox_with(d.path(), |o| o.sandbox = mode);
        let secs = 800_000 + (std::process::id() % 10_000) * 10 + mode as u32;
        let start = std::time::Instant::now();
        let o = call(
            &tb,
            "run_command",
            json!({"command": format!("sleep {secs} & echo started")}),
        )
        .await;
        assert_ok(&o);
        assert!(o.content.contains("started"));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{mode:?} waited for the background job"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            leftover_processes(&format!("sleep {secs}")).is_empty(),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn command_output_keeps_head_and_tail() {
    let d = repo();
    let tb = toolbox_with(d.path(), |o| {
        o.max_output_bytes = 1000;
        o.sandbox = if bwrap_works() {
            SandboxMode::Bubblewrap
        } else {
            SandboxMode::None
        };
    });
    let o = call(&tb, "run_command", json!({"command": "seq 1 200000"})).await;
    assert_ok(&o);
    assert!(
        o.content
            .starts_with("exit code: 0\n--- stdout ---\n1\n2\n3\n"),
        "{}",
        o.content
    );
    assert!(o.content.ends_with("199999\n200000\n"));
    assert!(o.content.contains(" bytes omitted …]"));
    assert!(o.content.len() < 1200, "{}", o.content.len());
}

#[tokio::test]
async fn missing_bubblewrap_disables_commands() {
    let d = repo();
    let tb = toolbox_with(d.path(), |o| o.bwrap_path = "/nonexistent/bwrap".into());
    let status = tb.sandbox_status();
    assert!(
        matches!(status, SandboxStatus::Unavailable { .. }),
        "{status:?}"
    );
    let o = call(&tb, "run_command", json!({"command": "touch ran.txt"})).await;
    assert_err(
        &o,
        "commands are disabled: the sandbox (bubblewrap) is not available",
    );
    assert!(o.content.contains("sandbox: none"));
    assert!(!d.path().join("ran.txt").exists());
    // The other tools still work.
    assert_ok(&call(&tb, "read_file", json!({"path": "README.md"})).await);
    // A bwrap that exists but cannot set up the sandbox is equally refused.
    let tb = toolbox_with(d.path(), |o| o.bwrap_path = "/bin/false".into());
    assert!(matches!(
        tb.sandbox_status(),
        SandboxStatus::Unavailable { .. }
    ));
}

#[tokio::test]
async fn bare_commands_get_a_private_home_and_configured_env() {
    let d = repo();
    let tb = toolbox_with(d.path(), |o| {
        o.sandbox = SandboxMode::None;
        o.extra_path = vec!["/opt/equitr-extra/bin".into()];
        o.extra_env = vec![("EQUITR_CONFIGURED".into(), "yes".into())];
    });
    assert_eq!(tb.sandbox_status(), SandboxStatus::Disabled);
    let o = call(
        &tb,
        "run_command",
        json!({"command": "echo \"$HOME|$PATH|$EQUITR_CONFIGURED\"; touch \"$HOME/x\""}),
    )
    .await;
    assert_ok(&o);
    let line = o.content.lines().nth(2).unwrap();
    let parts: Vec<&str> = line.split('|').collect();
    let home = Path::new(parts[0]).to_path_buf();
    assert!(home.is_dir() && home.join("x").exists(), "{line}");
    assert!(
        !home.starts_with(d.path()) && home != Path::new("/root"),
        "{line}"
    );
    assert!(parts[1].ends_with(":/opt/equitr-extra/bin"), "{line}");
    assert_eq!(parts[2], "yes");
    drop(tb);
    assert!(
        !home.exists(),
        "the private HOME is removed with the toolbox"
    );
}

/// The configuration the orchestrator needs for Rust repositories: a toolchain under a hidden
/// home, made visible read-only. Building offline works; the home stays otherwise hidden.
#[tokio::test]
async fn configured_toolchain_runs_in_the_sandbox() {
    let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else {
        return;
    };
    let (cargo_home, rustup_home) = (home.join(".cargo"), home.join(".rustup"));
    if !bwrap_works() || !cargo_home.join("bin/cargo").exists() || !rustup_home.is_dir() {
        eprintln!("skipping: needs bubblewrap and a rustup toolchain in the home directory");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("src")).unwrap();
    std::fs::write(
        d.path().join("Cargo.toml"),
        "[package]\nname = \"t\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("src/main.rs"),
        "fn main() { println!(\"built ok\"); }\n",
    )
    .unwrap();
    let tb = toolbox_with(d.path(), |o| {
        o.extra_ro_paths = vec![cargo_home.join("bin"), rustup_home.clone()];
        o.extra_path = vec![cargo_home.join("bin")];
        o.extra_env = vec![
            ("CARGO_HOME".into(), "/tmp/cargo-home".into()),
            (
                "RUSTUP_HOME".into(),
                rustup_home.to_string_lossy().into_owned(),
            ),
        ];
    });
    let o = call(
        &tb,
        "run_command",
        json!({"command": "cargo run --offline -q; ls -A ~/ | head -3"}),
    )
    .await;
    assert_ok(&o);
    assert!(o.content.contains("built ok"), "{}", o.content);
    let o = call(
        &tb,
        "run_command",
        json!({"command": format!("ls {}", cargo_home.display())}),
    )
    .await;
    assert_eq!(
        o.content, "exit code: 0\n--- stdout ---\nbin\n",
        "only bin/ is exposed"
    );
}

/// A worktree checkout: `git` works inside the sandbox (its git dir is reachable) but cannot
/// write it.
#[tokio::test]
async fn worktree_git_dir_is_readable_not_writable() {
    if !bwrap_works() {
        eprintln!("skipping: bubblewrap does not work here");
        return;
    }
    let main = repo();
    let wt_parent = tempfile::tempdir().unwrap();
    let wt = wt_parent.path().join("wt");
    git(
        main.path(),
        &["worktree", "add", "-q", wt.to_str().unwrap()],
    );
    let tb = toolbox(&wt);
    let o = call(
        &tb,
        "run_command",
        json!({"command": "git log --oneline | wc -l"}),
    )
    .await;
    assert_ok(&o);
    assert!(o.content.contains("\n1\n"), "{}", o.content);
    let o = call(
        &tb,
        "run_command",
        json!({"command": "git commit -q --allow-empty -m x"}),
    )
    .await;
    assert!(o.is_error, "{}", o.content);
    let head = std::fs::read_to_string(main.path().join(".git/refs/heads/master"))
        .or_else(|_| std::fs::read_to_string(main.path().join(".git/refs/heads/main")));
    let log = Command::new("git")
        .args(["log", "--all", "--oneline"])
        .current_dir(main.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).lines().count(),
        1,
        "{head:?}"
    );
}

#[test]
fn call_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<Toolbox>();
    let d = tempfile::tempdir().unwrap();
    let tb = toolbox(d.path());
    let fut = tb.call("read_file", "{}");
    assert_send(&fut);
}
