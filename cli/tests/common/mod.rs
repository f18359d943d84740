//! Helpers shared by the CLI test files.

#![allow(dead_code)]

use std::process::{Command, Output};

use amphi_testkit::TestDirs;

/// Runs `amphi ARGS` with the test's own store and state roots.
pub fn amphi(dirs: &TestDirs, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amphi"))
        .env("AMPHI_ROOT", &dirs.store)
        .env("AMPHI_STATE", &dirs.state)
        .args(args)
        .output()
        .unwrap()
}

/// Lossy UTF-8 of captured output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
