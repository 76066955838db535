//! Path confinement: every path a model names is resolved to a real path inside the root.
//!
//! Containment is checked on real paths (symlinks resolved by the kernel through
//! `canonicalize`), never on the text of the path, so `..`, absolute paths and symlinks
//! anywhere in the path are all judged by where they actually lead. Files are then opened and
//! the opened descriptor is checked again (`/proc/self/fd`), which closes the window between
//! the check and the use should something swap a directory for a symlink meanwhile.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a path was refused or an operation on it failed; each message is one line for the model.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path `{0}` is outside the workspace")]
    Outside(String),
    #[error("path `{0}` is on a special filesystem (/proc, /sys, /dev) and is not accessible")]
    Special(String),
    #[error(
        "path `{0}` is inside `.git`; the repository metadata cannot be written with file tools"
    )]
    GitDir(String),
    #[error("path `{0}` does not exist")]
    NotFound(String),
    #[error("path `{0}` is a directory")]
    IsDir(String),
    #[error("path `{0}` is not a regular file")]
    NotFile(String),
    #[error("path `{0}` is a broken symbolic link")]
    BrokenLink(String),
    #[error("{0}")]
    Io(String),
}

/// The confined directory tree the tools work in.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

/// Filesystems that expose process or kernel state rather than files of the project.
const SPECIAL_FS_MAGIC: &[i64] = &[
    0x9fa0,                // procfs
    0x6265_6572,           // sysfs
    0x1cd1,                // devpts
    0x6462_6720,           // debugfs
    0x7472_6163,           // tracefs
    0x7363_6673,           // securityfs
    0x27e0eb,              // cgroup
    0x6367_7270,           // cgroup2
    0xcafe_4a11u32 as i64, // bpf
];

impl Workspace {
    /// `root` is canonicalised; it must be a directory and must not itself be special.
    pub fn new(root: &Path) -> anyhow::Result<Workspace> {
        let canonical = std::fs::canonicalize(root)
            .map_err(|e| anyhow::anyhow!("workspace root {}: {e}", root.display()))?;
        if !canonical.is_dir() {
            anyhow::bail!("workspace root {} is not a directory", canonical.display());
        }
        if canonical == Path::new("/") {
            anyhow::bail!("the workspace root cannot be `/`");
        }
        if is_special_path(&canonical) {
            anyhow::bail!(
                "workspace root {} is on a special filesystem",
                canonical.display()
            );
        }
        Ok(Workspace { root: canonical })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How a real path inside the root is shown to the model: relative, `/`-separated.
    pub fn display(&self, real: &Path) -> String {
        match real.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => real.to_string_lossy().into_owned(),
        }
    }

    /// Resolves a path that must exist (file or directory) to its real path inside the root.
    pub fn resolve_existing(&self, user: &str) -> Result<PathBuf, PathError> {
        let joined = self.join(user)?;
        let real = match std::fs::canonicalize(&joined) {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A symlink whose target is missing says something different from a missing file.
                if std::fs::symlink_metadata(&joined).is_ok() {
                    return Err(PathError::BrokenLink(user.to_owned()));
                }
                // Report escapes as escapes even when the target is also missing.
                self.resolve_new(user)?;
                return Err(PathError::NotFound(user.to_owned()));
            }
            Err(e) => return Err(PathError::Io(format!("cannot resolve `{user}`: {e}"))),
        };
        self.check_inside(user, &real)?;
        Ok(real)
    }

    /// Resolves a path that may not exist yet: the deepest existing ancestor is canonicalised
    /// and checked, and the missing rest must be plain names (no `..`).
    pub fn resolve_new(&self, user: &str) -> Result<PathBuf, PathError> {
        let joined = self.join(user)?;
        // Walk the components physically: each existing prefix is canonicalised (so `..` is
        // judged after symlinks, as the kernel would), and once a component is missing the
        // rest must be plain names.
        let mut cur = PathBuf::from("/");
        let mut missing = false;
        for comp in joined.components() {
            match comp {
                Component::RootDir | Component::Prefix(_) => cur = PathBuf::from("/"),
                Component::CurDir => {}
                Component::ParentDir => {
                    if missing {
                        return Err(PathError::Outside(user.to_owned()));
                    }
                    // `cur` is canonical here, so its lexical parent is its real parent.
                    cur.pop();
                }
                Component::Normal(name) => {
                    cur.push(name);
                    if missing {
                        continue;
                    }
                    match std::fs::symlink_metadata(&cur) {
                        Ok(_) => {
                            cur = std::fs::canonicalize(&cur).map_err(|e| {
                                if e.kind() == std::io::ErrorKind::NotFound {
                                    PathError::BrokenLink(user.to_owned())
                                } else {
                                    PathError::Io(format!("cannot resolve `{user}`: {e}"))
                                }
                            })?;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing = true,
                        Err(e) => {
                            return Err(PathError::Io(format!("cannot resolve `{user}`: {e}")))
                        }
                    }
                }
            }
        }
        self.check_inside(user, &cur)?;
        Ok(cur)
    }

    /// Resolves a destination for writing: inside the root, not in `.git`, not a directory.
    pub fn resolve_for_write(&self, user: &str) -> Result<PathBuf, PathError> {
        let real = self.resolve_new(user)?;
        if self.in_git_dir(&real) {
            return Err(PathError::GitDir(user.to_owned()));
        }
        if real == self.root || real.is_dir() {
            return Err(PathError::IsDir(user.to_owned()));
        }
        Ok(real)
    }

    /// Opens an existing regular file for reading, refusing FIFOs and devices and re-checking
    /// where the opened descriptor really is.
    pub fn open_file(&self, user: &str) -> Result<File, PathError> {
        let real = self.resolve_existing(user)?;
        if real.is_dir() {
            return Err(PathError::IsDir(user.to_owned()));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            // NONBLOCK so a FIFO cannot hang the open; NOFOLLOW so the checked name is used.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&real)
            .map_err(|e| PathError::Io(format!("cannot open `{user}`: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| PathError::Io(format!("cannot stat `{user}`: {e}")))?;
        if !meta.is_file() {
            return Err(PathError::NotFile(user.to_owned()));
        }
        self.verify_fd(user, file.as_raw_fd())?;
        Ok(file)
    }

    /// Writes `content` to `user` atomically: a temporary file in the same directory, synced,
    /// then renamed over the destination. Missing parent directories are created. The rename
    /// replaces a symlink at the destination rather than following it.
    pub fn write_atomic(&self, user: &str, content: &[u8]) -> Result<PathBuf, PathError> {
        let real = self.resolve_for_write(user)?;
        let (parent, name) = match (real.parent(), real.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            _ => return Err(PathError::IsDir(user.to_owned())),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| PathError::Io(format!("cannot create directories for `{user}`: {e}")))?;
        let dir = open_dir(&parent)
            .map_err(|e| PathError::Io(format!("cannot open the directory of `{user}`: {e}")))?;
        // The directory we actually hold is the one judged, whatever happened since resolving.
        self.verify_fd(user, dir.as_raw_fd())?;
        let dir_real = fd_path(dir.as_raw_fd()).unwrap_or_else(|| parent.clone());
        if self.in_git_dir(&dir_real.join(&name)) {
            return Err(PathError::GitDir(user.to_owned()));
        }

        // Keep the mode of a file being replaced (an executable script stays executable).
        let mode = match fstatat_nofollow(&dir, &name) {
            Some(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFREG => st.st_mode & 0o7777,
            Some(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFDIR => {
                return Err(PathError::IsDir(user.to_owned()))
            }
            _ => 0o644,
        };

        let name_c = cstring(name.as_bytes())?;
        let (tmp_name, tmp_file) = create_temp(&dir, name.as_bytes()).map_err(|e| {
            PathError::Io(format!("cannot create a temporary file for `{user}`: {e}"))
        })?;
        let cleanup = |e: String| {
            // SAFETY: dir is a valid descriptor and tmp_name a valid C string.
            unsafe { libc::unlinkat(dir.as_raw_fd(), tmp_name.as_ptr(), 0) };
            PathError::Io(e)
        };
        let mut tmp_file = tmp_file;
        if let Err(e) = tmp_file.write_all(content) {
            return Err(cleanup(format!("cannot write `{user}`: {e}")));
        }
        if let Err(e) = tmp_file.set_permissions(std::fs::Permissions::from_mode(mode)) {
            return Err(cleanup(format!("cannot set permissions on `{user}`: {e}")));
        }
        if let Err(e) = tmp_file.sync_all() {
            return Err(cleanup(format!("cannot sync `{user}`: {e}")));
        }
        drop(tmp_file);
        // SAFETY: both names are valid C strings relative to the same open directory.
        let rc = unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                tmp_name.as_ptr(),
                dir.as_raw_fd(),
                name_c.as_ptr(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(cleanup(format!("cannot replace `{user}`: {e}")));
        }
        Ok(dir_real.join(name))
    }

    /// Whether a real path lies in a `.git` directory or is a `.git` entry (at any depth, so
    /// submodules are covered too).
    pub fn in_git_dir(&self, real: &Path) -> bool {
        real.strip_prefix(&self.root)
            .map(|rel| rel.components().any(|c| c.as_os_str() == ".git"))
            .unwrap_or(false)
    }

    fn join(&self, user: &str) -> Result<PathBuf, PathError> {
        if user.is_empty() {
            return Err(PathError::Empty);
        }
        if user.as_bytes().contains(&0) {
            return Err(PathError::Nul);
        }
        let p = Path::new(user);
        if p.is_absolute() {
            if is_special_path(p) {
                return Err(PathError::Special(user.to_owned()));
            }
            Ok(p.to_path_buf())
        } else {
            Ok(self.root.join(p))
        }
    }

    fn check_inside(&self, user: &str, real: &Path) -> Result<(), PathError> {
        if !real.starts_with(&self.root) {
            if is_special_path(real) {
                return Err(PathError::Special(user.to_owned()));
            }
            return Err(PathError::Outside(user.to_owned()));
        }
        if is_special_fs(real) {
            return Err(PathError::Special(user.to_owned()));
        }
        Ok(())
    }

    fn verify_fd(&self, user: &str, fd: i32) -> Result<(), PathError> {
        if let Some(real) = fd_path(fd) {
            if !real.starts_with(&self.root) {
                return Err(PathError::Outside(user.to_owned()));
            }
        }
        // SAFETY: statfs is plain data; fd is a valid open descriptor.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(fd, &mut st) } == 0
            && SPECIAL_FS_MAGIC.contains(&(st.f_type as i64))
        {
            return Err(PathError::Special(user.to_owned()));
        }
        Ok(())
    }
}

fn is_special_path(p: &Path) -> bool {
    ["/proc", "/sys", "/dev"].iter().any(|s| p.starts_with(s))
}

fn is_special_fs(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: statfs is plain data; c is a valid NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && SPECIAL_FS_MAGIC.contains(&(st.f_type as i64))
}

/// The path the kernel records for an open descriptor; `None` where /proc is not mounted.
fn fd_path(fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

fn cstring(bytes: &[u8]) -> Result<CString, PathError> {
    CString::new(bytes).map_err(|_| PathError::Nul)
}

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: c is a valid C string; the returned descriptor is owned exactly once below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstatat_nofollow(dir: &OwnedFd, name: &OsStr) -> Option<libc::stat> {
    let c = CString::new(name.as_bytes()).ok()?;
    // SAFETY: stat is plain data; dir is valid; c is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (rc == 0).then_some(st)
}

/// Creates `.<name>.<random>.tmp` exclusively in `dir` (never following a symlink).
fn create_temp(dir: &OwnedFd, name: &[u8]) -> std::io::Result<(CString, File)> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..16 {
        let mut tmp = b".".to_vec();
        // Keep the name short enough for NAME_MAX whatever the destination name is.
        tmp.extend_from_slice(&name[..name.len().min(200)]);
        tmp.extend_from_slice(format!(".{:016x}.tmp", rng.gen::<u64>()).as_bytes());
        let c = CString::new(tmp)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
        // SAFETY: dir is valid, c is a valid C string; the descriptor is owned once below.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just opened and is not owned elsewhere.
            return Ok((c, unsafe { File::from_raw_fd(fd) }));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}
