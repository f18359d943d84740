//! `amphi history` / `image history`, as `docker history` prints it:
//! IMAGE, CREATED, CREATED BY, SIZE and COMMENT, newest first; `-q`,
//! `--no-trunc`, `-H=false` and `--format`.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

/// `amphi image history` flags.
#[derive(Args)]
pub struct HistoryArgs {
    /// Sizes and dates in human-readable form (-H=false: bytes and RFC 3339).
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Full ids and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Only the ids.
    #[arg(short, long)]
    quiet: bool,
    /// Go-template-like format, e.g. '{{.CreatedBy}}' or 'table {{.ID}}\t{{.Size}}'.
    #[arg(long)]
    format: Option<String>,
    /// The image.
    image: String,
}

/// `s` cut to `width` characters with an ellipsis, as Docker's CLI cuts.
fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Prints `a.image`'s history.
pub fn history(engine: &amphi_engine::Engine, a: &HistoryArgs) -> Result<u8> {
    let entries = engine.image_history(&a.image)?;
    let id = |e: &Value| -> String {
        let id = e["Id"].as_str().unwrap_or("");
        match id.strip_prefix("sha256:") {
            Some(hex) if !a.no_trunc => hex[..hex.len().min(12)].to_string(),
            _ => id.to_string(),
        }
    };
    if a.quiet {
        for e in &entries {
            println!("{}", id(e));
        }
        return Ok(0);
    }
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let created = e["Created"]
                .as_u64()
                .filter(|s| *s > 0)
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
            let size = e["Size"].as_u64().unwrap_or(0);
            let by = e["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
            json!({
                "ID": id(e),
                "CreatedSince": match created {
                    None => "N/A".to_string(),
                    Some(t) if a.human => crate::ps::ago(Some(t)),
                    Some(t) => amphi_engine::inspect::rfc3339(Some(t)),
                },
                "CreatedAt": created.map_or_else(String::new, |t| amphi_engine::inspect::rfc3339(Some(t))),
                "CreatedBy": if a.no_trunc { by } else { ellipsis(&by, 45) },
                "Size": if a.human { crate::format::decimal_size(size, 3) } else { size.to_string() },
                "Comment": e["Comment"],
            })
        })
        .collect();
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    let template = a.format.as_deref().unwrap_or(default);
    let headers = [
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
    ];
    print!("{}", crate::format::list(template, &headers, &rows)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::ellipsis;

    #[test]
    fn long_commands_are_cut_as_dockers_cli_cuts_them() {
        assert_eq!(ellipsis("short", 45), "short");
        let long = "/bin/sh -c #(nop) ADD file:0123456789abcdef in / ";
        let cut = ellipsis(long, 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…') && long.starts_with(&cut[..cut.len() - '…'.len_utf8()]));
    }
}
