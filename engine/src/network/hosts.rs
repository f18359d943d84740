//! A container's `/etc/hosts` and `/etc/resolv.conf`, files of its
//! directory bind-mounted into it. `/etc/hosts` is rewritten in place (the
//! same inode, so a running container sees the change) for each run: the
//! localhost lines, its own address and name, `--add-host` entries, and on
//! a user network every other container of the network by name and alias
//! (amphi has no daemon to answer DNS, so names are hosts entries kept up
//! to date as containers come and go, as nerdctl keeps them).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::{Error, Result};
use crate::options::RunOptions;

/// One name line.
pub struct Entry {
    /// The address.
    pub ip: String,
    /// Its names.
    pub names: Vec<String>,
}

/// Writes `hosts` for a container: `own` is its address (none without a
/// network of its own), `gateway` its network's (for `host-gateway`),
/// `hostname` and `names` what it is called.
pub fn write_hosts(
    path: &Path,
    own: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    hostname: &str,
    names: &[String],
    opts: &RunOptions,
    peers: &[Entry],
) -> Result<()> {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut mine = vec![hostname.to_string()];
    mine.extend(names.iter().filter(|n| *n != hostname).cloned());
    match own {
        Some(ip) => text.push_str(&format!("{ip}\t{}\n", mine.join(" "))),
        None => text.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    for h in &opts.add_hosts {
        let (name, ip) = parse_add_host(h)?;
        // Docker's special value: the host, as the container reaches it.
        let ip = match (ip, gateway) {
            ("host-gateway", Some(g)) => g.to_string(),
            ("host-gateway", None) => "127.0.0.1".to_string(),
            (ip, _) => ip.to_string(),
        };
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    for p in peers {
        text.push_str(&format!("{}\t{}\n", p.ip, p.names.join(" ")));
    }
    // In place: the container's bind mount holds this inode.
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// `--add-host NAME:IP` (Docker also takes `NAME=IP`).
pub fn parse_add_host(s: &str) -> Result<(&str, &str)> {
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| Error::Invalid(format!("bad --add-host {s:?}: use HOST:IP")))?;
    let ip_ok = ip.parse::<std::net::IpAddr>().is_ok() || ip == "host-gateway";
    if name.is_empty() || !ip_ok {
        return Err(Error::Invalid(format!("bad --add-host {s:?}: use HOST:IP")));
    }
    Ok((name, ip))
}

/// The container's resolv.conf: the host's as it is for `--network host`;
/// otherwise without loopback nameservers (unreachable from another
/// network namespace), public resolvers when none remain; `--dns`,
/// `--dns-search` and `--dns-option` replace the host's lines.
pub fn resolv_conf(host_text: &str, host_network: bool, opts: &RunOptions) -> Result<String> {
    for d in &opts.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::Invalid(format!(
                "bad --dns {d:?}: not an IP address"
            )));
        }
    }
    let key = |l: &str, k: &str| -> bool { l.split_whitespace().next() == Some(k) };
    let mut lines: Vec<String> = host_text
        .lines()
        .filter(|l| {
            let ns = l.trim_start().strip_prefix("nameserver").map(str::trim);
            host_network || !matches!(ns, Some(a) if a.starts_with("127.") || a == "::1")
        })
        .filter(|l| opts.dns.is_empty() || !key(l, "nameserver"))
        .filter(|l| opts.dns_search.is_empty() || !(key(l, "search") || key(l, "domain")))
        .filter(|l| opts.dns_options.is_empty() || !key(l, "options"))
        .map(str::to_string)
        .collect();
    lines.extend(opts.dns.iter().map(|d| format!("nameserver {d}")));
    if !opts.dns_search.is_empty() {
        lines.push(format!("search {}", opts.dns_search.join(" ")));
    }
    if !opts.dns_options.is_empty() {
        lines.push(format!("options {}", opts.dns_options.join(" ")));
    }
    if !lines.iter().any(|l| key(l, "nameserver")) {
        lines.push("nameserver 8.8.8.8".into());
        lines.push("nameserver 8.8.4.4".into());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_docker() {
        let host = "# generated\nnameserver 127.0.0.53\nsearch lan\noptions edns0\n";
        let o = RunOptions::default();
        let t = resolv_conf(host, false, &o).unwrap();
        assert!(
            !t.contains("127.0.0.53")
                && t.contains("nameserver 8.8.8.8")
                && t.contains("search lan"),
            "{t}"
        );
        assert!(resolv_conf(host, true, &o).unwrap().contains("127.0.0.53"));
        let o = RunOptions {
            dns: vec!["10.0.0.2".into()],
            dns_search: vec!["example.org".into()],
            dns_options: vec!["ndots:2".into()],
            ..Default::default()
        };
        let t = resolv_conf("nameserver 192.0.2.1\nsearch lan\n", false, &o).unwrap();
        assert_eq!(
            t,
            "nameserver 10.0.0.2\nsearch example.org\noptions ndots:2\n"
        );
        let bad = RunOptions {
            dns: vec!["x".into()],
            ..Default::default()
        };
        assert!(resolv_conf("", false, &bad).is_err());
    }

    #[test]
    fn add_host_forms() {
        assert_eq!(parse_add_host("db:10.0.0.5").unwrap(), ("db", "10.0.0.5"));
        assert_eq!(parse_add_host("db=::1").unwrap(), ("db", "::1"));
        assert!(parse_add_host("db").is_err() && parse_add_host("db:x").is_err());
    }
}
