//! `action/install.sh` and `action/cache-key.sh` run with bash as the Action's steps run them,
//! against a server on 127.0.0.1 playing the release host
//! (`https://github.com/<repo>/releases/download`, replaced through `EQUITR_RELEASE_BASE`).
//! Nothing needs root or the network: `HOME` is a temporary directory, and `cargo`, `sudo`,
//! `apt-get`, `sysctl` and `bwrap` on `PATH` are stubs that record how they were called (the
//! real ones are hidden), so the source build is the command the script runs, not a compile.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

const X64: &str = "x86_64-unknown-linux-musl";
const ARM64: &str = "aarch64-unknown-linux-musl";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("action")
        .join(name)
}

/// The release host: files by URL path, 404 for the rest, and the paths asked for.
#[derive(Clone)]
struct ReleaseHost {
    base: String,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ReleaseHost {
    fn start() -> ReleaseHost {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = ReleaseHost {
            base: format!("http://{}", listener.local_addr().unwrap()),
            files: Arc::default(),
            requests: Arc::default(),
        };
        let h = host.clone();
        // Lives as long as the test process: each test has its own port.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                h.answer(stream);
            }
        });
        host
    }

    fn answer(&self, mut stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => break,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {}
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        self.requests.lock().unwrap().push(path.clone());
        let (status, body) = match self.files.lock().unwrap().get(&path) {
            Some(b) => ("200 OK", b.clone()),
            None => ("404 Not Found", b"Not Found".to_vec()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    }

    fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), body);
    }

    /// A release as release.yml publishes it: the archive and its `sha256sum` line.
    fn publish(&self, tag: &str, target: &str, archive: &[u8]) {
        let name = format!("equitr-coder-{target}.tar.gz");
        self.put(&format!("/{tag}/{name}"), archive.to_vec());
        self.put(
            &format!("/{tag}/{name}.sha256"),
            sha256_line(archive, &name).into_bytes(),
        );
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn sha256_line(bytes: &[u8], name: &str) -> String {
    format!("{}  {name}\n", hex::encode(Sha256::digest(bytes)))
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `equitr-coder-<target>.tar.gz` holding a stand-in `equitr-coder` that prints `says`.
fn archive(dir: &Path, says: &str) -> Vec<u8> {
    archive_of(dir, &[("equitr-coder", says)])
}

/// A release archive of stand-in binaries, each printing what it says.
fn archive_of(dir: &Path, bins: &[(&str, &str)]) -> Vec<u8> {
    let staging = tempfile::tempdir_in(dir).unwrap();
    for (name, says) in bins {
        write_executable(
            &staging.path().join(name),
            &format!("#!/bin/sh\necho '{says}'\n"),
        );
    }
    let out = staging.path().join("release.tar.gz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(staging.path())
        .arg("-czf")
        .arg(&out)
        .args(bins.iter().map(|(name, _)| name))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A runner: a home, a checkout of the action, and a PATH of stubs over the machine's tools.
struct Runner {
    dir: tempfile::TempDir,
    home: PathBuf,
    action: PathBuf,
    env: BTreeMap<String, String>,
}

/// What install.sh, cache-key.sh and the stubs run besides the stubbed commands (`cargo`,
/// `sudo`, `apt-get`, `sysctl`, `bwrap`).
const TOOLS: &[&str] = &[
    "bash",
    "sh",
    "env",
    "dirname",
    "basename",
    "uname",
    "awk",
    "curl",
    "head",
    "tr",
    "sha256sum",
    "cat",
    "mkdir",
    "tar",
    "gzip",
    "rm",
    "find",
    "install",
    "sed",
    "mktemp",
    "sort",
    "xargs",
    "cut",
    "chmod",
];

impl Runner {
    fn new(host: &ReleaseHost) -> Runner {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let action = dir.path().join("_actions/equitr/equitr-coder/v1");
        checkout(&action, "1.2.3");

        // The machine's tools the scripts use, and nothing else: a real cargo, sudo, apt-get
        // or bwrap must never run here (a new tool in a script fails here with "not found").
        let tools = dir.path().join("tools");
        std::fs::create_dir(&tools).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        for name in TOOLS {
            let found = std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{name} is not installed"));
            std::os::unix::fs::symlink(found, tools.join(name)).unwrap();
        }
        let stubs = dir.path().join("stubs");
        std::fs::create_dir(&stubs).unwrap();
        let record = "printf '%s\\n' \"$(basename \"$0\") $*\" >> \"$STUB_LOG\"";
        write_executable(
            &stubs.join("cargo"),
            &format!(
                "#!/usr/bin/env bash\n{record}\n\
                 root=\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=\"$2\"; shift; done\n\
                 mkdir -p \"$root/bin\"\n\
                 printf '#!/bin/sh\\necho built from source\\n' > \"$root/bin/equitr-coder\"\n\
                 chmod +x \"$root/bin/equitr-coder\"\n"
            ),
        );
        write_executable(
            &stubs.join("sudo"),
            &format!("#!/usr/bin/env bash\n{record}\nexec \"$@\"\n"),
        );
        write_executable(
            &stubs.join("apt-get"),
            &format!("#!/usr/bin/env bash\n{record}\n"),
        );
        write_executable(
            &stubs.join("sysctl"),
            &format!(
                "#!/usr/bin/env bash\nif [ \"$1\" = -n ]; then echo \"${{FAKE_USERNS_RESTRICTED:-0}}\"; exit 0; fi\n{record}\n"
            ),
        );
        write_executable(&stubs.join("bwrap"), "#!/bin/sh\nexit 0\n");

        let env = BTreeMap::from(
            [
                ("HOME", home.to_str().unwrap()),
                ("PATH", &format!("{}:{}", stubs.display(), tools.display())),
                ("STUB_LOG", dir.path().join("calls").to_str().unwrap()),
                ("GITHUB_ACTION_PATH", action.to_str().unwrap()),
                ("ACTION_REF", "v1"),
                ("ACTION_REPOSITORY", "equitr/equitr-coder"),
                ("RUNNER_OS", "Linux"),
                ("RUNNER_ARCH", "X64"),
                ("EQUITR_RELEASE_BASE", &host.base),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Runner {
            dir,
            home,
            action,
            env,
        }
    }

    fn set(&mut self, var: &str, value: &str) {
        self.env.insert(var.into(), value.into());
    }

    fn unset(&mut self, var: &str) {
        self.env.remove(var);
    }

    fn run(&self, name: &str) -> Out {
        let out = Command::new("bash")
            .arg(script(name))
            .env_clear()
            .envs(&self.env)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn install(&self) -> Out {
        self.run("install.sh")
    }

    /// What the stubs were asked to do, one line a call.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn root(&self) -> PathBuf {
        self.home.join(".equitr-coder")
    }

    /// What the installed `equitr-coder` prints, or `None` when there is none.
    fn installed(&self) -> Option<String> {
        let bin = self.root().join("bin/equitr-coder");
        let out = Command::new(&bin).output().ok()?;
        assert!(out.status.success(), "{}", bin.display());
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn source_build(&self) -> String {
        format!(
            "cargo install --locked --path {} --root {}",
            self.action.display(),
            self.root().display()
        )
    }
}

/// The files of an action checkout that make the binary, at a version.
fn checkout(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("migrations/sqlite")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"equitr-coder\"\nversion = \"{version}\"\nedition = \"2021\"\n\n\
             [dependencies.serde]\nversion = \"9.9.9\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("Cargo.lock"), "version = 4\n").unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        dir.join("migrations/sqlite/0001_init.sql"),
        "CREATE TABLE t (x);\n",
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), "# equitr-coder\n").unwrap();
}

fn one_line(s: &str) -> &str {
    assert_eq!(s.lines().count(), 1, "not one line: {s:?}");
    s.trim_end()
}

#[test]
fn a_major_tag_downloads_its_release_verifies_it_and_caches_it() {
    let host = ReleaseHost::start();
    let r = Runner::new(&host);
    host.publish("v1.2.3", X64, &archive(r.dir.path(), "equitr-coder 1.2.3"));

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("equitr-coder: downloaded release v1.2.3 for {X64} (sha256 verified)\n")
    );
    assert_eq!(r.installed().as_deref(), Some("equitr-coder 1.2.3"));
    // `v1` is resolved through the checkout's Cargo.toml, without asking any API.
    assert_eq!(
        host.requests(),
        [
            format!("/v1.2.3/equitr-coder-{X64}.tar.gz"),
            format!("/v1.2.3/equitr-coder-{X64}.tar.gz.sha256"),
        ]
    );
    // bwrap is there and AppArmor allows user namespaces: nothing else to do, no cargo.
    assert_eq!(r.calls(), Vec::<String>::new());

    // The next run of the same action finds it.
    let again = r.install();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.stdout,
        format!("equitr-coder: using the cached build (release v1.2.3 for {X64})\n")
    );
    assert_eq!(
        host.requests().len(),
        2,
        "the cached build was downloaded again"
    );
}

#[test]
fn an_arm64_runner_at_an_exact_tag_gets_the_aarch64_binary() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    r.set("ACTION_REF", "v1.2.3");
    r.set("RUNNER_ARCH", "ARM64");
    host.publish("v1.2.3", X64, &archive(r.dir.path(), "the x86_64 binary"));
    host.publish(
        "v1.2.3",
        ARM64,
        &archive(r.dir.path(), "the aarch64 binary"),
    );

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        one_line(&out.stdout),
        format!("equitr-coder: downloaded release v1.2.3 for {ARM64} (sha256 verified)")
    );
    assert_eq!(r.installed().as_deref(), Some("the aarch64 binary"));
}

#[test]
fn every_binary_of_the_release_is_installed() {
    // release.yml packs each [[bin]] of the crate: `equitr-coder` and `EQUITR-coder`.
    let host = ReleaseHost::start();
    let r = Runner::new(&host);
    host.publish(
        "v1.2.3",
        X64,
        &archive_of(
            r.dir.path(),
            &[
                ("equitr-coder", "lower case"),
                ("EQUITR-coder", "as the guide spells it"),
            ],
        ),
    );

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.installed().as_deref(), Some("lower case"));
    let other = Command::new(r.root().join("bin/EQUITR-coder"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&other.stdout),
        "as the guide spells it\n"
    );
}

#[test]
fn a_wrong_checksum_is_refused_and_nothing_is_installed() {
    let host = ReleaseHost::start();
    let r = Runner::new(&host);
    let name = format!("equitr-coder-{X64}.tar.gz");
    host.put(
        &format!("/v1.2.3/{name}"),
        archive(r.dir.path(), "a tampered binary"),
    );
    host.put(
        &format!("/v1.2.3/{name}.sha256"),
        sha256_line(&archive(r.dir.path(), "the published binary"), &name).into_bytes(),
    );

    let out = r.install();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        one_line(&out.stderr),
        format!(
            "equitr-coder: refusing release v1.2.3: the sha256 of {}/v1.2.3/{name} does not match \
             {name}.sha256 (a corrupted download or a tampered release); nothing was installed",
            host.base
        )
    );
    assert_eq!(out.stdout, "", "it went on after the mismatch");
    assert!(!r.root().exists(), "something was installed");
    assert_eq!(
        r.calls(),
        Vec::<String>::new(),
        "no fallback to a source build"
    );
}

#[test]
fn a_checksum_file_that_names_another_file_is_refused() {
    // `sha256sum --check` checks the file the line names: a line with the right hash of some
    // other file on the runner must not pass for the archive.
    let host = ReleaseHost::start();
    let r = Runner::new(&host);
    let name = format!("equitr-coder-{X64}.tar.gz");
    host.put(
        &format!("/v1.2.3/{name}"),
        archive(r.dir.path(), "a tampered binary"),
    );
    let other = r.action.join("Cargo.toml");
    host.put(
        &format!("/v1.2.3/{name}.sha256"),
        sha256_line(&std::fs::read(&other).unwrap(), other.to_str().unwrap()).into_bytes(),
    );

    let out = r.install();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        one_line(&out.stderr).starts_with("equitr-coder: refusing release v1.2.3: "),
        "{}",
        out.stderr
    );
    assert!(!r.root().exists(), "something was installed");
}

#[test]
fn a_missing_release_asset_falls_back_to_building_from_source() {
    let host = ReleaseHost::start();
    let r = Runner::new(&host);
    // A release of another target only: nothing for this runner.
    host.publish(
        "v1.2.3",
        ARM64,
        &archive(r.dir.path(), "the aarch64 binary"),
    );

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "equitr-coder: no release v1.2.3 for {X64} at {} (ref 'v1'); building from source (several minutes)\n",
            host.base
        )
    );
    assert_eq!(r.calls(), [r.source_build()]);
    assert_eq!(r.installed().as_deref(), Some("built from source"));
    assert_eq!(
        host.requests(),
        [format!("/v1.2.3/equitr-coder-{X64}.tar.gz")]
    );
}

#[test]
fn a_branch_ref_builds_from_source_without_asking_for_a_release() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    r.set("ACTION_REF", "main");
    host.publish("v1.2.3", X64, &archive(r.dir.path(), "equitr-coder 1.2.3"));

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "equitr-coder: no release for ref 'main'; building from source (several minutes)\n"
    );
    assert_eq!(r.calls(), [r.source_build()]);
    assert_eq!(host.requests(), Vec::<String>::new());

    let again = r.install();
    assert_eq!(
        again.stdout,
        "equitr-coder: using the cached build (source build of ref 'main')\n"
    );
    assert_eq!(r.calls().len(), 1, "built twice");
}

#[test]
fn an_unreachable_release_host_falls_back_to_building_from_source() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    r.set("EQUITR_RELEASE_BASE", &base);

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = one_line(&out.stdout);
    assert!(
        line.starts_with(&format!(
            "equitr-coder: could not download {base}/v1.2.3/equitr-coder-{X64}.tar.gz (HTTP 000"
        )) && line.ends_with("; building from source (several minutes)"),
        "{line}"
    );
    assert_eq!(r.calls(), [r.source_build()]);
}

#[test]
fn moving_the_major_tag_to_a_new_release_replaces_the_cached_binary() {
    let host = ReleaseHost::start();
    let r = Runner::new(&host);
    host.publish("v1.2.3", X64, &archive(r.dir.path(), "equitr-coder 1.2.3"));
    host.publish("v1.3.0", X64, &archive(r.dir.path(), "equitr-coder 1.3.0"));
    assert_eq!(r.install().code, 0);
    assert_eq!(r.installed().as_deref(), Some("equitr-coder 1.2.3"));

    // `v1` now points at the 1.3.0 commit; ~/.equitr-coder still holds 1.2.3 (a self-hosted
    // runner's home, or a cache restored by an older key).
    checkout(&r.action, "1.3.0");
    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("equitr-coder: downloaded release v1.3.0 for {X64} (sha256 verified)\n")
    );
    assert_eq!(r.installed().as_deref(), Some("equitr-coder 1.3.0"));
}

#[test]
fn without_the_ref_variables_the_runners_checkout_path_names_the_ref() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    r.unset("ACTION_REF");
    r.unset("ACTION_REPOSITORY");
    host.publish("v1.2.3", X64, &archive(r.dir.path(), "equitr-coder 1.2.3"));

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        one_line(&out.stdout),
        format!("equitr-coder: downloaded release v1.2.3 for {X64} (sha256 verified)")
    );
}

#[test]
fn a_runner_without_bubblewrap_gets_it_and_user_namespaces_are_allowed() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    std::fs::remove_file(r.dir.path().join("stubs/bwrap")).unwrap();
    r.set("FAKE_USERNS_RESTRICTED", "1");
    host.publish("v1.2.3", X64, &archive(r.dir.path(), "equitr-coder 1.2.3"));

    let out = r.install();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        r.calls(),
        [
            "sudo apt-get update -qq",
            "apt-get update -qq",
            "sudo apt-get install -y --no-install-recommends bubblewrap",
            "apt-get install -y --no-install-recommends bubblewrap",
            "sudo sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0",
            "sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0",
        ]
    );
}

#[test]
fn a_runner_that_is_not_linux_is_refused() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    r.set("RUNNER_OS", "macOS");
    r.set("RUNNER_ARCH", "ARM64");

    let out = r.install();
    assert_eq!(out.code, 1);
    assert_eq!(
        one_line(&out.stderr),
        "equitr-coder: runners must be Linux (x86_64 or arm64); this one is macOS"
    );
    assert_eq!(host.requests(), Vec::<String>::new());
    assert_eq!(r.calls(), Vec::<String>::new());
}

fn cache_key(r: &Runner) -> String {
    let output = r.dir.path().join("github_output");
    let _ = std::fs::remove_file(&output);
    let mut env = r.env.clone();
    env.insert("GITHUB_OUTPUT".into(), output.to_str().unwrap().into());
    let out = Command::new("bash")
        .arg(script("cache-key.sh"))
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&output).unwrap();
    one_line(&text)
        .strip_prefix("key=")
        .unwrap_or_else(|| panic!("{text}"))
        .to_string()
}

#[test]
fn the_cache_key_changes_with_the_actions_source_and_ref() {
    let host = ReleaseHost::start();
    let mut r = Runner::new(&host);
    let key = cache_key(&r);
    assert!(key.starts_with("equitr-coder-Linux-X64-v1-"), "{key}");
    assert_eq!(cache_key(&r), key, "not deterministic");

    // Where the runner checked the action out does not matter; what is in it does.
    let elsewhere = r.dir.path().join("elsewhere");
    checkout(&elsewhere, "1.2.3");
    r.set("GITHUB_ACTION_PATH", elsewhere.to_str().unwrap());
    assert_eq!(cache_key(&r), key, "the key depends on the checkout's path");

    std::fs::write(elsewhere.join("README.md"), "# reworded\n").unwrap();
    assert_eq!(cache_key(&r), key, "a README change is not a new binary");

    let mut seen = vec![key];
    let mut changed = |r: &Runner, what: &str| {
        let k = cache_key(r);
        assert!(!seen.contains(&k), "{what}: the key did not change ({k})");
        seen.push(k);
    };
    std::fs::write(elsewhere.join("src/main.rs"), "fn main() { run() }\n").unwrap();
    changed(&r, "a source file");
    std::fs::create_dir(elsewhere.join("src/jobs")).unwrap();
    std::fs::write(elsewhere.join("src/jobs/new.rs"), "\n").unwrap();
    changed(&r, "a new source file");
    std::fs::write(elsewhere.join("migrations/sqlite/0002.sql"), "\n").unwrap();
    changed(&r, "a migration");
    std::fs::write(elsewhere.join("Cargo.lock"), "version = 4\n# bumped\n").unwrap();
    changed(&r, "Cargo.lock");
    r.set("ACTION_REF", "v2");
    changed(&r, "the ref");
    r.set("RUNNER_ARCH", "ARM64");
    changed(&r, "the architecture");
}
