//! Choosing a network's subnet and bridge device so they clash with
//! nothing on the host: not with its routes or addresses (which include
//! every other network's bridge, of any amphi store, since a bridge is made
//! with its address when its network is), nor with another network of
//! this store. Docker's default pools: 172.17-31.0.0/16, then
//! 192.168.0.0/16 in /20s.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use ipnet::Ipv4Net;

use crate::error::{Error, Result};

/// The IPv4 networks in use on the host: every route's destination and
/// every interface address's subnet.
pub fn host_networks() -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    // /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    for line in std::fs::read_to_string("/proc/net/route")
        .unwrap_or_default()
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dst), Some(mask)) = (f.get(1), f.get(7)) else {
            continue;
        };
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(dst, 16), u32::from_str_radix(mask, 16))
        else {
            continue;
        };
        // Little-endian hex of the address bytes.
        let dst = Ipv4Addr::from(dst.swap_bytes());
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue; // the default route covers everything and clashes with nothing
        }
        if let Ok(n) = Ipv4Net::new(dst, prefix) {
            out.push(n.trunc());
        }
    }
    // Addresses of interfaces that are down have no route.
    if let Ok(o) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let mut words = line.split_whitespace();
            if words.any(|w| w == "inet") {
                if let Some(n) = words.next().and_then(|a| a.parse::<Ipv4Net>().ok()) {
                    out.push(n.trunc());
                }
            }
        }
    }
    out
}

/// Whether two networks share an address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first pool subnet that overlaps none of `taken`.
pub fn choose(taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    let pool = (17..=31)
        .map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid"))
        .chain(
            (0..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).expect("valid")),
        );
    for candidate in pool {
        if !taken.iter().any(|t| overlaps(t, &candidate)) {
            return Ok(candidate);
        }
    }
    Err(Error::Invalid(
        "no free subnet left in 172.17.0.0/16-172.31.0.0/16 or 192.168.0.0/16: give one with --subnet".into(),
    ))
}

/// Parses a user's `--subnet` (an IPv4 CIDR of at most /30, its host bits
/// zero, as Docker insists).
pub fn parse(s: &str) -> Result<Ipv4Net> {
    let n: Ipv4Net = s.parse().map_err(|_| {
        Error::Invalid(format!(
            "bad --subnet {s:?}: use an IPv4 CIDR like 10.10.0.0/24"
        ))
    })?;
    if n.trunc() != n {
        return Err(Error::Invalid(format!(
            "bad --subnet {s:?}: host bits set (did you mean {}?)",
            n.trunc()
        )));
    }
    if n.prefix_len() > 30 {
        return Err(Error::Invalid(format!(
            "bad --subnet {s:?}: too small for containers (at most /30)"
        )));
    }
    Ok(n)
}

/// Whether a network device of this name exists.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// What a bridge's alias (`ifalias`) starts with, followed by the store
/// root that made it.
const OWNER: &str = "amphi-store:";

/// Makes bridge `name` with `gateway/prefix` and brings it up (the CNI
/// bridge plugin then finds it ready; making it here claims its name and
/// subnet on the host at once). Its alias names the store `owner`, so a
/// bridge whose store was deleted is found and removed (see
/// [`remove_orphans`]).
pub fn make_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, owner: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| Error::io("ip", e))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    };
    // A set address stays (a bridge's own follows its lowest port's),
    // so the ADD results the plugins CHECK against stay true. Locally
    // administered, from the name.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let b = h.to_be_bytes();
    let mac = format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    );
    run(&["link", "add", name, "address", &mac, "type", "bridge"])?;
    let made = run(&["addr", "add", &format!("{gateway}/{prefix}"), "dev", name]).and_then(|()| {
        // Absolute, so the check holds from any working directory.
        let owner = owner.canonicalize().unwrap_or_else(|_| owner.to_path_buf());
        let alias = format!("{OWNER}{}", owner.display());
        run(&["link", "set", name, "up", "alias", &alias])
    });
    if made.is_err() {
        let _ = delete_bridge(name);
    }
    made
}

/// Deletes the bridges whose store is gone (its root deleted with the
/// store's networks in it, so no amphi command would ever remove them).
/// Call under the host-wide network lock.
pub fn remove_orphans() {
    for e in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let alias = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
        let Some(store) = alias.trim_end().strip_prefix(OWNER) else {
            continue;
        };
        if !Path::new(store).is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Err(err) = delete_bridge(&name) {
                tracing::warn!("removing bridge {name} of the deleted store {store}: {err}");
            }
        }
    }
}

/// Deletes bridge `name` (gone already is no error).
pub fn delete_bridge(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    let out = Command::new("ip")
        .args(["link", "del", name])
        .output()
        .map_err(|e| Error::io("ip", e))?;
    if !out.status.success() && link_exists(name) {
        return Err(Error::Invalid(format!(
            "deleting bridge {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
