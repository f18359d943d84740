//! Path resolution inside a container rootfs that never escapes it.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// The most symlinks followed while resolving one path (as the kernel's 40).
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (as seen inside the container) to a host path under
/// `root`, following symlinks as if `root` were `/`: `..` and absolute link
/// targets are clamped at `root`, so the result is always inside it.
/// Components that do not exist yet are kept as given.
pub(crate) fn secure_join(root: &Path, path: &Path) -> PathBuf {
    resolve_in_root(root, path, true)
}

/// [`secure_join`] for any caller (the engine's `cp`): with `follow_last`
/// false a symlink in the last component is kept as it is, not followed.
pub fn resolve_in_root(root: &Path, path: &Path, follow_last: bool) -> PathBuf {
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = components(path);
    pending.reverse();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta)
                if meta.file_type().is_symlink()
                    && links < MAX_SYMLINKS
                    && (follow_last || !pending.is_empty()) =>
            {
                links += 1;
                let Ok(target) = std::fs::read_link(&candidate) else {
                    resolved.push(part);
                    continue;
                };
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut next = components(&target);
                next.reverse();
                pending.extend(next);
            }
            _ => resolved.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(resolved);
    out
}

fn components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsStr::new("..").to_os_string()),
            _ => None,
        })
        .collect()
}

/// The PATH a container gets when its spec sets none (Docker's and runc's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `program` as the container would: a name with a slash is taken
/// relative to `cwd`, a bare name is searched on `path_var`. Returns the path
/// inside the container and the host path of the file.
pub(crate) fn find_in_rootfs(
    root: &Path,
    program: &str,
    cwd: &str,
    path_var: &str,
) -> Option<(String, PathBuf)> {
    let inside: Vec<String> = if program.contains('/') {
        if program.starts_with('/') {
            vec![program.to_string()]
        } else {
            vec![format!("{}/{}", cwd.trim_end_matches('/'), program)]
        }
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{}", d.trim_end_matches('/'), program))
            .collect()
    };
    inside.into_iter().find_map(|p| {
        let host = secure_join(root, Path::new(&p));
        host.metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|_| (p, host))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clamps_dotdot_and_absolute_links_at_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/etc", root.join("a/abs")).unwrap();
        symlink("../../../../..", root.join("a/up")).unwrap();
        assert_eq!(secure_join(root, Path::new("../../x")), root.join("x"));
        assert_eq!(
            secure_join(root, Path::new("/a/abs/passwd")),
            root.join("etc/passwd")
        );
        assert_eq!(secure_join(root, Path::new("/a/up/etc")), root.join("etc"));
        assert_eq!(secure_join(root, Path::new("a/b/../b")), root.join("a/b"));
    }

    #[test]
    fn symlink_loops_terminate() {
        let dir = tempfile::tempdir().unwrap();
        symlink("loop", dir.path().join("loop")).unwrap();
        let p = secure_join(dir.path(), Path::new("/loop/x"));
        assert!(p.starts_with(dir.path()));
    }

    #[test]
    fn finds_programs_on_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/tool"), b"x").unwrap();
        let (inside, _) = find_in_rootfs(dir.path(), "tool", "/", "/usr/bin:/bin").unwrap();
        assert_eq!(inside, "/bin/tool");
        assert!(find_in_rootfs(dir.path(), "nope", "/", "/bin").is_none());
        assert!(find_in_rootfs(dir.path(), "bin/tool", "/", "").is_some());
    }
}
