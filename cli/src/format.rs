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

/// Rows through `template`, as Docker's list commands print them: with a
/// leading `table`, a header row (each `{{.Field}}` as its entry in
/// `headers`, else its name upper-cased) and the columns aligned;
/// otherwise a line per row.
pub fn list(template: &str, headers: &[(&str, &str)], rows: &[Value]) -> Result<String> {
    let (table, body) = match template.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, template),
    };
    let mut lines = Vec::new();
    if table {
        let mut header = body.to_string();
        for (field, name) in headers {
            header = header.replace(&format!("{{{{.{field}}}}}"), name);
        }
        lines.push(header_of(&header));
    }
    for r in rows {
        lines.push(render(body, r)?);
    }
    if table {
        return Ok(align(&lines));
    }
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// A table header from a template: each `{{.Field}}` becomes FIELD.
fn header_of(t: &str) -> String {
    let mut out = String::new();
    let mut rest = t.replace("\\t", "\t");
    while let Some(s) = rest.find("{{") {
        out.push_str(&rest[..s]);
        let after = rest[s + 2..].to_string();
        let e = after.find("}}").unwrap_or(after.len());
        let word = after[..e]
            .trim()
            .trim_start_matches('.')
            .to_ascii_uppercase();
        out.push_str(&word);
        rest = after[(e + 2).min(after.len())..].to_string();
    }
    out.push_str(&rest);
    out
}

/// Tab-separated rows as aligned columns, three spaces apart (Docker's
/// tabwriter settings).
fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A size with `digits` significant digits (Go's `%.Ng`), in steps of
/// `step` named `units`: Docker's HumanSize and BytesSize.
fn size(n: u64, step: f64, units: &[&str], digits: i32) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= step && i + 1 < units.len() {
        v /= step;
        i += 1;
    }
    let decimals = (digits - 1 - v.log10().floor().max(0.0) as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", units[i])
}

/// "1.23MB": decimal units, as Docker's HumanSize(WithPrecision).
pub fn decimal_size(n: u64, digits: i32) -> String {
    size(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], digits)
}

/// "1.5MiB": binary units, as Docker's BytesSize.
pub fn binary_size(n: u64, digits: i32) -> String {
    size(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], digits)
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
