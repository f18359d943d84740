//! Network state a test must leave as it found it: the bridges of a
//! store's networks, iptables rules naming a container (by id or address),
//! pinned netns mounts and IPAM leases; and what a simulated reboot takes
//! away (rules and bridges, which the kernel loses on a real one).

use std::path::Path;
use std::process::{Command, Stdio};

/// Chains the CNI plugins share between containers (never a leak).
const SHARED: &[&str] = &[
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
    "CNI-FORWARD",
    "CNI-ADMIN",
    "CNI-ISOLATION-STAGE-1",
    "CNI-ISOLATION-STAGE-2",
];

/// The bridge devices of the store's networks (`<store>/networks/*.json`).
pub fn store_bridges(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("networks"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let at = text.find("\"bridge\": \"")? + "\"bridge\": \"".len();
            Some(text[at..].split('"').next()?.to_string())
        })
        .collect()
}

/// The ids and addresses of the store's containers that have a network
/// attachment (`<store>/containers/<id>/network.json`).
pub fn attachment_needles(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(e.path().join("network.json")) else {
            continue;
        };
        out.push(e.file_name().to_string_lossy().into_owned());
        if let Some(at) = text.find("\"ip\": \"") {
            let rest = &text[at + "\"ip\": \"".len()..];
            out.extend(rest.split('"').next().map(String::from));
        }
    }
    out
}

/// Every iptables rule (filter and nat, `iptables-save` form) with one
/// of `needles` in it.
pub fn rules_naming(needles: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["filter", "nat"] {
        let o = Command::new("iptables-save").args(["-t", table]).output();
        let text = o
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.extend(
            text.lines()
                .filter(|l| l.starts_with("-A ") && needles.iter().any(|n| contains_word(l, n)))
                .map(|l| format!("{table}: {l}")),
        );
    }
    out
}

/// `needle` in `line` not as part of a longer address or name
/// (172.17.0.1 is not in 172.17.0.15).
fn contains_word(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(i, _)| {
        let after = line[i + needle.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    })
}

/// Deletes the rules naming `needles` and the per-container chains they
/// jump to, as a reboot would have.
pub fn drop_rules_naming(needles: &[String]) {
    for table in ["filter", "nat"] {
        let o = Command::new("iptables-save").args(["-t", table]).output();
        let text = o
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A ") && needles.iter().any(|n| contains_word(l, n)))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let mut chains: Vec<String> = lines
            .iter()
            .filter_map(|l| {
                l.split(" -j ")
                    .nth(1)?
                    .split_whitespace()
                    .next()
                    .map(String::from)
            })
            .filter(|c| c.starts_with("CNI-") && !SHARED.contains(&c.as_str()))
            .collect();
        chains.sort();
        chains.dedup();
        let mut input = format!("*{table}\n");
        for l in &lines {
            input.push_str(&format!("-D {}\n", &l[3..]));
        }
        for c in &chains {
            input.push_str(&format!("-F {c}\n-X {c}\n"));
        }
        input.push_str("COMMIT\n");
        restore(&input);
    }
}

fn restore(input: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let _ = child.wait();
}

/// Removes a store's bridges and the rules naming them (a test's end, or
/// a reboot: the store's records stay).
pub fn drop_bridges(store: &Path) {
    let bridges = store_bridges(store);
    for b in &bridges {
        if Path::new("/sys/class/net").join(b).exists() {
            let _ = Command::new("ip").args(["link", "del", b]).status();
        }
    }
    drop_rules_naming(&bridges);
}

/// What a test left of its networks: bridges of networks its store no
/// longer has are checked by the caller; here, rules naming `needles`
/// (container ids and addresses), netns pins (and their directory) under
/// `state` — so call it once every container is removed — and leases
/// in the store's IPAM directories.
pub fn network_leaks(store: &Path, state: &Path, needles: &[String]) -> Vec<String> {
    let mut found: Vec<String> = rules_naming(needles)
        .into_iter()
        .map(|r| format!("iptables rule remains: {r}"))
        .collect();
    for e in std::fs::read_dir(state.join("netns"))
        .into_iter()
        .flatten()
        .flatten()
    {
        found.push(format!("netns pin remains: {}", e.path().display()));
    }
    // With every container gone, the pins' directory goes too.
    if state.join("netns").exists() {
        found.push(format!("{} remains", state.join("netns").display()));
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let state_text = state.to_string_lossy();
    for l in info.lines() {
        if l.split(' ')
            .nth(4)
            .is_some_and(|m| m.starts_with(state_text.as_ref()))
        {
            found.push(format!("mount remains: {l}"));
        }
    }
    for net in std::fs::read_dir(store.join("networks/ipam"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for lease in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = lease.file_name().to_string_lossy().into_owned();
            if !name.starts_with("last_reserved_ip") && name != "lock" {
                found.push(format!("IPAM lease remains: {}", lease.path().display()));
            }
        }
    }
    found
}
