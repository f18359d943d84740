//! The environment a user gives a container, resolved as Docker's CLI
//! resolves it when the container is created: `--env-file` files first,
//! then `-e`, a later value of a variable replacing an earlier one; a bare
//! `KEY` (in a file or after `-e`) takes the caller's value, and is left
//! out when the caller has none.

use std::path::Path;

use crate::bail;
use crate::error::{Context, Result};

/// The `KEY=VALUE` entries of `files` then `flags`, each bare `KEY`
/// looked up with `lookup` (the caller's environment).
pub fn resolve(
    files: &[impl AsRef<Path>],
    flags: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let f = f.as_ref();
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --env-file {}", f.display()))?;
        for (n, line) in text.lines().enumerate() {
            // As Docker's: leading blanks go, the value is kept verbatim
            // (no quotes are taken off, trailing blanks stay).
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            entry(line, &lookup, &mut out)
                .with_context(|| format!("--env-file {} line {}", f.display(), n + 1))?;
        }
    }
    for kv in flags {
        entry(kv, &lookup, &mut out).with_context(|| format!("bad -e {kv:?}"))?;
    }
    Ok(out)
}

/// Resolves `files` and `flags` against the caller's environment now and
/// sets them in the spec's `process.env` (`process` is the spec's process
/// object), each replacing a variable of its name there.
pub(crate) fn apply(
    process: &mut serde_json::Value,
    files: &[impl AsRef<Path>],
    flags: &[String],
) -> Result<()> {
    if files.is_empty() && flags.is_empty() {
        return Ok(());
    }
    let mut env: Vec<String> = serde_json::from_value(process["env"].take()).unwrap_or_default();
    for kv in resolve(files, flags, |k| std::env::var(k).ok())? {
        let k = kv.split_once('=').map(|(k, _)| k.to_string());
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != k.as_deref());
        env.push(kv);
    }
    process["env"] = serde_json::json!(env);
    Ok(())
}

/// Adds one entry, replacing an earlier one of the same name.
fn entry(kv: &str, lookup: &impl Fn(&str) -> Option<String>, out: &mut Vec<String>) -> Result<()> {
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv.trim_end(), None),
    };
    if key.is_empty() {
        bail!("a variable needs a name");
    }
    if key.chars().any(char::is_whitespace) {
        bail!("variable name {key:?} contains whitespace");
    }
    let Some(value) = value.or_else(|| lookup(key)) else {
        return Ok(());
    };
    out.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
    out.push(format!("{key}={value}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error and its causes, as the CLI prints them.
    fn chain(e: &crate::Error) -> String {
        let mut out = e.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(c) = cur {
            out += &format!(": {c}");
            cur = c.source();
        }
        out
    }

    fn caller(k: &str) -> Option<String> {
        (k == "FROM_CALLER").then(|| "yes".to_string())
    }

    #[test]
    fn files_then_flags_later_wins_and_bare_names_come_from_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(
            &f,
            "# a comment\n\n  A=1\nB=\"quoted\" \nFROM_CALLER\nNOT_SET\nC=x=y\n",
        )
        .unwrap();
        let env = resolve(&[&f], &["A=2".into(), "FROM_CALLER".into()], caller).unwrap();
        assert_eq!(env, ["B=\"quoted\" ", "C=x=y", "A=2", "FROM_CALLER=yes"]);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "OK=1\nBAD NAME=2\n").unwrap();
        let e = chain(&resolve(&[&f], &[], caller).unwrap_err());
        assert!(e.contains("line 2") && e.contains("whitespace"), "{e}");
        let none: [&Path; 0] = [];
        let e = chain(&resolve(&none, &["=x".into()], caller).unwrap_err());
        assert!(e.contains("needs a name"), "{e}");
        let missing = dir.path().join("missing");
        let e = chain(&resolve(&[&missing], &[], caller).unwrap_err());
        assert!(e.contains("missing"), "{e}");
    }
}
