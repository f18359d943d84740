//! Helpers shared by the CLI test files.

#![allow(dead_code)]

use std::process::{Command, Output};

use amphi_testkit::TestDirs;

/// `amphi ARGS` with the test's own store and state roots, not started.
pub fn amphi_cmd(dirs: &TestDirs, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amphi"));
    cmd.env("AMPHI_ROOT", &dirs.store)
        .env("AMPHI_STATE", &dirs.state)
        .args(args);
    cmd
}

/// Runs `amphi ARGS` with the test's own store and state roots.
pub fn amphi(dirs: &TestDirs, args: &[&str]) -> Output {
    amphi_cmd(dirs, args).output().unwrap()
}

/// Lossy UTF-8 of captured output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
