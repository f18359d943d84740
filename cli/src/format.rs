//! `--format` templates as Docker users write them, for `ps` and
//! `inspect`: `{{.Field.Sub}}`, `{{json .Field}}`, `{{index .Map "key"}}`,
//! `{{.Label "key"}}`, `\t` and `\n` escapes, and a leading `table`
//! (which `ps` answers with a header row). Go's full template language
//! is not: anything else is an error naming the action.

use anyhow::{bail, Result};
use serde_json::Value;

/// Renders `template` over `v`.
pub fn render(template: &str, v: &Value) -> Result<String> {
    let t = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("bad --format {template:?}: unclosed {{{{");
        };
        out.push_str(&action(after[..end].trim(), v, template)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn action(a: &str, v: &Value, template: &str) -> Result<String> {
    let words = split_words(a);
    match words.as_slice() {
        [path] => Ok(show(lookup(v, path, template)?)),
        ["json", path] => Ok(serde_json::to_string(lookup(v, path, template)?)?),
        ["index", path, key] | [path @ ".Label", key] => {
            // ps's .Labels is a "k=v,..." string; .Label reads its map.
            let map = lookup(
                v,
                if *path == ".Label" { ".LabelMap" } else { path },
                template,
            )?;
            let key = key.trim_matches('"');
            Ok(show(map.get(key).unwrap_or(&Value::Null)))
        }
        _ => bail!("bad --format {template:?}: cannot do {{{{{a}}}}}"),
    }
}

/// The words of an action (quoted keys hold no spaces in practice).
fn split_words(a: &str) -> Vec<&str> {
    a.split_whitespace().collect()
}

fn lookup<'a>(v: &'a Value, path: &str, template: &str) -> Result<&'a Value> {
    if path == "." {
        return Ok(v);
    }
    let Some(p) = path.strip_prefix('.') else {
        bail!("bad --format {template:?}: {path:?} is not a field (.Name)");
    };
    let mut cur = v;
    for part in p.split('.') {
        cur = match cur.get(part) {
            Some(x) => x,
            None => bail!("bad --format {template:?}: no field {part:?}"),
        };
    }
    Ok(cur)
}

/// A value as Go's templates print it.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", show(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_json_index() {
        let v = json!({"Id": "abc", "State": {"Status": "running", "ExitCode": 0},
                       "Labels": {"a": "1"}, "LabelMap": {"a": "1"}, "Args": ["x", "y"]});
        assert_eq!(
            render("{{.Id}}\\t{{.State.Status}}", &v).unwrap(),
            "abc\trunning"
        );
        assert_eq!(render("{{json .Args}}", &v).unwrap(), "[\"x\",\"y\"]");
        assert_eq!(render("{{index .Labels \"a\"}}", &v).unwrap(), "1");
        assert_eq!(render("{{.Label \"a\"}}", &v).unwrap(), "1");
        assert_eq!(render("{{.State.ExitCode}}", &v).unwrap(), "0");
        assert!(render("{{.Nope}}", &v).is_err());
        assert!(render("{{if .Id}}", &v).is_err());
    }
}
