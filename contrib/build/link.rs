// Shared by the build scripts of the binaries containers are started
// through (`include!`d): the shim's and the CLI's. Each is exec'd once or
// more per container (the shim by containerd, the CLI as `amphi` and again
// as a Wasm container's init), so how it links is paid at every start.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Links the package's binaries position-dependent (`-no-pie`): no
/// relocation pass at start, so no private copies of relocated pages in
/// every process and a faster exec (measured on the shim: PSS 7.8 -> 6.6
/// MB). The trade: the binary's own image is not randomised (its
/// libraries, heap and stacks still are).
pub fn no_pie() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}

/// Links the package's binaries statically: each exec skips the dynamic
/// loader (measured: 0.61 -> 0.25 ms of CPU per exec). Rust only links
/// statically with `-C target-feature=+crt-static`, which Cargo cannot set
/// for one package; so the bins get `-static` and a directory where the
/// libraries rustc names (`-lgcc_s -lc -lm ...`) resolve to archives:
/// gcc's `libgcc_eh.a` stands in for `libgcc_s`, as under crt-static.
/// Skipped (a dynamic link, as before) when an archive is missing.
pub fn static_link(what: &str) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("static-libs");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let archives = [
        ("libgcc_s.a", "libgcc_eh.a"),
        ("libc.a", "libc.a"),
        ("libm.a", "libm.a"),
        ("libpthread.a", "libpthread.a"),
        ("libdl.a", "libdl.a"),
        ("librt.a", "librt.a"),
        ("libutil.a", "libutil.a"),
    ];
    for (name, file) in archives {
        let Some(found) = cc_file(&cc, file) else {
            println!("cargo:warning=no {file}: {what} is linked dynamically");
            return;
        };
        if std::os::unix::fs::symlink(&found, dir.join(name)).is_err() {
            return;
        }
    }
    println!("cargo:rustc-link-arg-bins=-static");
    println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
}

/// Where the C compiler finds `file`, if it does.
fn cc_file(cc: &str, file: &str) -> Option<PathBuf> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={file}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // Unfound, gcc echoes the bare name back.
    (path.is_absolute() && Path::new(&path).exists()).then_some(path)
}
