//! One run's attachment to a network: a pinned netns, CNI ADD (with the
//! ports to publish) before the container starts, and CNI DEL after it
//! has exited (or when the next command finds its watcher dead, or after a
//! reboot, when only the leases are left to release). What DEL needs is
//! kept in `<root>/containers/<id>/network.json` before ADD runs, so no
//! failure point leaves an attachment nobody can undo.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cni::{self, Invocation};
use super::hosts::{self, Entry};
use super::ports::{self, PortMapping};
use super::{list, netns, Network};
use crate::error::{Error, Result};
use crate::record::{self, Record};
use crate::Engine;

const FILE: &str = "network.json";
const IFNAME: &str = "eth0";

/// A container's attachment to its network during a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The pinned netns.
    pub netns: PathBuf,
    /// The configuration list ADD ran (DEL runs the same).
    pub conflist: Value,
    /// The runtime values given to the plugins.
    pub runtime_config: Value,
    /// ADD's result, once it succeeded.
    pub result: Option<Value>,
    /// The container's address.
    pub ip: Option<Ipv4Addr>,
    /// Its MAC address.
    #[serde(default)]
    pub mac: String,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// The names other containers of the network know it by.
    pub names: Vec<String>,
    /// Its interface in the container: eth0 for the network it was run
    /// on, eth1... for those `network connect` added.
    #[serde(default = "first_ifname")]
    pub ifname: String,
}

fn first_ifname() -> String {
    IFNAME.to_string()
}

/// The file of `id`'s attachment on interface `ifname`: `network.json`
/// for eth0, `network.ethN.json` for the others.
fn file(root: &Path, id: &str, ifname: &str) -> PathBuf {
    if ifname == IFNAME {
        record::dir(root, id).join(FILE)
    } else {
        record::dir(root, id).join(format!("network.{ifname}.json"))
    }
}

/// The attachment of `id`'s current run on its first network, if any.
pub fn load(root: &Path, id: &str) -> Option<Attachment> {
    let bytes = std::fs::read(file(root, id, IFNAME)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every attachment of `id`'s current run, eth0's first.
pub fn load_all(root: &Path, id: &str) -> Vec<Attachment> {
    let mut out: Vec<Attachment> = load(root, id).into_iter().collect();
    let mut extra: Vec<Attachment> = std::fs::read_dir(record::dir(root, id))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("network.eth") && n.ends_with(".json")
        })
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    extra.sort_by_key(|a: &Attachment| ifname_index(&a.ifname));
    out.extend(extra);
    out
}

fn ifname_index(ifname: &str) -> u32 {
    ifname.trim_start_matches("eth").parse().unwrap_or(0)
}

fn save(root: &Path, id: &str, a: &Attachment) -> Result<()> {
    let p = file(root, id, &a.ifname);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(a).expect("json"))
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
}

fn remove_file(root: &Path, id: &str, ifname: &str) -> Result<()> {
    let p = file(root, id, ifname);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&p, e)),
        _ => Ok(()),
    }
}

/// Every attachment of the store's containers now, with its container's
/// id; those on `network` only, unless it is empty.
pub fn attached(root: &Path, network: &str) -> Vec<(String, Attachment)> {
    // A container whose record cannot be read is still attached.
    let (records, broken) = record::list_all(root).unwrap_or_default();
    records
        .into_iter()
        .map(|r| r.id)
        .chain(broken.into_iter().map(|(id, _)| id))
        .flat_map(|id| {
            load_all(root, &id)
                .into_iter()
                .map(move |a| (id.clone(), a))
        })
        .filter(|(_, a)| network.is_empty() || a.network == network)
        .collect()
}

/// Whether a network mode is a network to attach to (not `host`, `none`,
/// another container's, or a bundle's own spec).
pub fn is_attached_mode(mode: &str) -> bool {
    !matches!(mode, "host" | "none" | "") && !mode.starts_with(CONTAINER_MODE)
}

/// The prefix of `--network container:NAME` (the record keeps the id).
pub const CONTAINER_MODE: &str = "container:";

/// Removes the rules the firewall plugin's `same-bridge` ingress policy
/// made for `bridge` (it leaves them, as the bridge may still be used):
/// with the bridge gone, they would be rules of nothing.
pub fn drop_isolation_rules(bridge: &str) {
    // Exactly as firewall 1.1 writes them (`iptables -S` shows them so).
    let comment = [
        "-m",
        "comment",
        "--comment",
        "CNI firewall plugin rules (ingressPolicy: same-bridge)",
    ];
    for (chain, rule) in [
        (
            "CNI-ISOLATION-STAGE-1",
            vec!["-i", bridge, "!", "-o", bridge],
        ),
        ("CNI-ISOLATION-STAGE-2", vec!["-o", bridge]),
    ] {
        let target = if chain.ends_with('1') {
            "CNI-ISOLATION-STAGE-2"
        } else {
            "DROP"
        };
        let mut args = rule;
        args.extend(comment);
        args.extend(["-j", target]);
        // Each rule once per ADD of the bridge's first container: delete until none is left.
        for _ in 0..64 {
            let ok = std::process::Command::new("iptables")
                .args(["-w", "-t", "filter", "-D", chain])
                .args(&args)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
        }
    }
}

/// The plugins' view of `id`'s attachment `a`.
pub fn invocation<'a>(id: &'a str, a: &'a Attachment) -> Invocation<'a> {
    Invocation {
        container_id: id,
        netns: &a.netns,
        ifname: &a.ifname,
        runtime_config: &a.runtime_config,
    }
}

impl Engine {
    /// Where `id`'s network namespace is pinned during a run.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.config.state.join("netns").join(id)
    }

    /// Attaches `rec` for a run (a no-op unless its network mode is a
    /// network): pins its netns, publishes its ports and runs CNI ADD for
    /// its network (eth0), then for each network `network connect` added
    /// (eth1...), and writes its /etc/hosts and its peers'. Undone on
    /// failure.
    pub(crate) fn connect(&self, rec: &Record) -> Result<()> {
        let mode = rec.network_mode();
        if let Some(target) = mode.strip_prefix(CONTAINER_MODE) {
            return self.join_network_of(rec, target);
        }
        if !is_attached_mode(mode) {
            return Ok(());
        }
        let all = (|| -> Result<()> {
            for (i, name) in rec.networks().iter().enumerate() {
                let net = if i == 0 {
                    self.ensure_network(name)?
                } else {
                    super::find(self.root(), name)?
                };
                self.attach_one(rec, &net, i)?;
            }
            Ok(())
        })();
        if let Err(e) = all {
            let _ = self.disconnect(&rec.id);
            return Err(e);
        }
        Ok(())
    }

    /// CNI ADD of `rec`'s run to `net` as its `index`-th interface: the
    /// first pins the netns and publishes the ports, and holds the
    /// default route; the others only add an address on their network.
    /// What DEL needs is saved before ADD; on failure the caller detaches.
    fn attach_one(&self, rec: &Record, net: &Network, index: usize) -> Result<()> {
        let root = self.root();
        let first = index == 0;
        let ifname = format!("eth{index}");
        let pin = self.netns_path(&rec.id);
        let mut names = vec![rec.name.clone(), rec.id[..12].to_string()];
        if first {
            names.extend(rec.options.network_aliases.iter().cloned());
        }
        let att = {
            let _lock = super::flock(&super::dir(root).join(".attach.lock"))?;
            let ports = if first {
                let requests = rec
                    .options
                    .publish
                    .iter()
                    .map(|p| ports::parse(p))
                    .collect::<Result<Vec<_>>>()?;
                let published: Vec<(String, PortMapping)> = attached(root, "")
                    .into_iter()
                    .filter(|(id, _)| id != &rec.id)
                    .flat_map(|(id, a)| {
                        let name = record::load(root, &id).map(|r| r.name).unwrap_or(id);
                        a.ports.into_iter().map(move |p| (name.clone(), p))
                    })
                    .collect();
                let ports = ports::resolve(&requests, &published)?;
                netns::pin(&pin)?;
                ports
            } else {
                Vec::new()
            };
            let mut conflist = net.conflist(root, !ports.is_empty());
            if !first {
                // One default route, the first network's, as Docker's.
                conflist["plugins"][0]["ipam"]["routes"] = json!([]);
            }
            let att = Attachment {
                network: net.name.clone(),
                netns: pin.clone(),
                conflist,
                runtime_config: json!({ "portMappings": ports }),
                result: None,
                ip: None,
                mac: String::new(),
                gateway: net.gateway,
                prefix: net.subnet.prefix_len(),
                ports,
                names,
                ifname: ifname.clone(),
            };
            if let Err(e) = save(root, &rec.id, &att) {
                if first {
                    let _ = netns::unpin(&pin);
                }
                return Err(e);
            }
            att
        };
        let result = cni::add(&att.conflist, &invocation(&rec.id, &att))?;
        let mut att = att;
        let (ip, mac) = cni::result_address(&result).ok_or_else(|| {
            Error::Invalid(format!(
                "network {}: the plugins gave no IPv4 address",
                net.name
            ))
        })?;
        att.ip = Some(ip);
        att.mac = mac;
        att.result = Some(result);
        save(root, &rec.id, &att)?;
        self.refresh_hosts(net)?;
        tracing::debug!(id = rec.id, network = net.name, ifname, "attached");
        Ok(())
    }

    /// `--network container:ID`: `rec`'s run joins the network namespace
    /// of the running container `target` (pinned, so it is `rec`'s until
    /// its run ends even should the target stop), with the target's
    /// /etc/hosts and /etc/resolv.conf, as Docker shares them.
    fn join_network_of(&self, rec: &Record, target: &str) -> Result<()> {
        let root = self.root();
        let pid = self.running_init(rec, target, "network")?;
        let other = record::load(root, target)?;
        let pin = self.netns_path(&rec.id);
        netns::pin_existing(&pin, Path::new(&format!("/proc/{pid}/ns/net")))?;
        let (from, to) = (record::dir(root, &other.id), record::dir(root, &rec.id));
        for f in ["hosts", "resolv.conf"] {
            if let Ok(bytes) = std::fs::read(from.join(f)) {
                if let Err(e) = crate::bundle::write(&to.join(f), bytes) {
                    let _ = netns::unpin(&pin);
                    return Err(e);
                }
            }
        }
        tracing::debug!(id = rec.id, target = other.id, "joined its network");
        Ok(())
    }

    /// Detaches `id`'s run: CNI DEL on each of its networks, the last
    /// joined first (its addresses and ports released), its netns
    /// unpinned, its peers' hosts rewritten. Nothing attached is no
    /// error; a failed DEL keeps that attachment for the next try.
    pub(crate) fn disconnect(&self, id: &str) -> Result<()> {
        let root = self.root();
        let pin = self.netns_path(id);
        let all = load_all(root, id);
        if all.is_empty() {
            return netns::unpin(&pin);
        }
        for att in all.iter().rev() {
            self.detach_one(id, att)?;
        }
        netns::unpin(&pin)
    }

    /// CNI DEL of one attachment, its file removed and its network's
    /// members told.
    fn detach_one(&self, id: &str, att: &Attachment) -> Result<()> {
        let root = self.root();
        cni::del(&att.conflist, &invocation(id, att), att.result.as_ref())?;
        remove_file(root, id, &att.ifname)?;
        if let Ok(net) = super::find(root, &att.network) {
            self.refresh_hosts(&net)?;
        }
        tracing::debug!(id, network = att.network, ifname = att.ifname, "detached");
        Ok(())
    }

    /// `network connect NETWORK CONTAINER`: `container` joins `network`
    /// on an interface of its own, now if it runs and at every later
    /// start; its name resolves there for the network's members.
    pub fn connect_network(&self, network: &str, container: &str) -> Result<()> {
        let root = self.root();
        let net = super::find(root, network)?;
        let rec = self.container(container)?;
        let mode = rec.network_mode();
        if !is_attached_mode(mode) {
            return Err(Error::Invalid(format!(
                "container {} has --network {}: only a container on a network can join another",
                rec.name,
                if mode.is_empty() {
                    "of its bundle's spec"
                } else {
                    mode
                }
            )));
        }
        if rec.networks().contains(&net.name) {
            return Err(Error::Invalid(format!(
                "container {} is already on network {}",
                rec.name, net.name
            )));
        }
        let rec = record::update(root, &rec.id, |r| {
            r.options.extra_networks.push(net.name.clone())
        })?;
        let running = rec.state.status == crate::record::Status::Running
            && netns::is_pinned(&self.netns_path(&rec.id));
        if running {
            let index = rec.networks().len() - 1;
            if let Err(e) = self.attach_one(&rec, &net, index) {
                let att = load_all(root, &rec.id)
                    .into_iter()
                    .find(|a| a.ifname == format!("eth{index}"));
                if let Some(att) = att {
                    let _ = self.detach_one(&rec.id, &att);
                }
                let _ = record::update(root, &rec.id, |r| {
                    r.options.extra_networks.retain(|n| n != &net.name)
                });
                return Err(e);
            }
        }
        Ok(())
    }

    /// `network disconnect NETWORK CONTAINER`: the reverse of
    /// [`Engine::connect_network`]; the network a container was run on
    /// stays (it holds its netns, ports and default route).
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let root = self.root();
        let net = super::find(root, network)?;
        let rec = self.container(container)?;
        if !rec.options.extra_networks.contains(&net.name) {
            let why = if rec.networks().first() == Some(&net.name) {
                "it was run on it (--network); only networks joined with network connect can be left"
            } else {
                "it is not on it"
            };
            return Err(Error::Invalid(format!(
                "container {} cannot leave network {}: {why}",
                rec.name, net.name
            )));
        }
        for att in load_all(root, &rec.id)
            .iter()
            .filter(|a| a.network == net.name)
        {
            self.detach_one(&rec.id, att)?;
        }
        record::update(root, &rec.id, |r| {
            r.options.extra_networks.retain(|n| n != &net.name)
        })?;
        Ok(())
    }

    /// `id` was renamed from `old` to `new`: the name its network's
    /// members know it by follows.
    pub(crate) fn renamed(&self, id: &str, old: &str, new: &str) -> Result<()> {
        let root = self.root();
        for mut att in load_all(root, id) {
            for n in att.names.iter_mut().filter(|n| n.as_str() == old) {
                *n = new.to_string();
            }
            {
                let _lock = super::flock(&super::dir(root).join(".attach.lock"))?;
                save(root, id, &att)?;
            }
            if let Ok(net) = super::find(root, &att.network) {
                self.refresh_hosts(&net)?;
            }
        }
        Ok(())
    }

    /// Rewrites /etc/hosts of every container attached to `net`: each
    /// lists the others on a network that resolves names.
    fn refresh_hosts(&self, net: &Network) -> Result<()> {
        let root = self.root();
        let _lock = super::flock(&super::dir(root).join(".attach.lock"))?;
        let everyone = attached(root, "");
        let networks = list(root).unwrap_or_default();
        let resolves = |name: &str| {
            networks
                .iter()
                .any(|n| n.name == name && n.resolves_names())
        };
        let mut done = std::collections::HashSet::new();
        for (id, _) in everyone.iter().filter(|(_, a)| a.network == net.name) {
            if !done.insert(id.clone()) {
                continue;
            }
            let Ok(rec) = record::load(root, id) else {
                continue;
            };
            // Its peers on every network it is on (that resolves names).
            let mine: Vec<&Attachment> = everyone
                .iter()
                .filter(|(i, _)| i == id)
                .map(|(_, a)| a)
                .collect();
            let peers: Vec<Entry> = everyone
                .iter()
                .filter(|(other, a)| {
                    other != id
                        && a.ip.is_some()
                        && resolves(&a.network)
                        && mine.iter().any(|m| m.network == a.network)
                })
                .map(|(_, a)| Entry {
                    ip: a.ip.expect("filtered").to_string(),
                    names: a.names.clone(),
                })
                .collect();
            let first = mine.iter().find(|a| a.ifname == IFNAME).or(mine.first());
            self.write_hosts(
                &rec,
                first.and_then(|a| a.ip),
                first.map(|a| a.gateway),
                &peers,
            )?;
        }
        Ok(())
    }

    /// Writes `rec`'s /etc/hosts.
    pub(crate) fn write_hosts(
        &self,
        rec: &Record,
        own: Option<Ipv4Addr>,
        gateway: Option<Ipv4Addr>,
        peers: &[Entry],
    ) -> Result<()> {
        let dir = record::dir(self.root(), &rec.id);
        let hostname = std::fs::read_to_string(dir.join("hostname")).unwrap_or_default();
        let hostname = hostname.trim();
        let names = if own.is_some() {
            vec![rec.name.clone()]
        } else {
            Vec::new()
        };
        hosts::write_hosts(
            &dir.join("hosts"),
            own,
            gateway,
            hostname,
            &names,
            &rec.options,
            peers,
        )
    }
}
