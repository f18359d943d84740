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
use super::{netns, Network};
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
}

fn file(root: &Path, id: &str) -> PathBuf {
    record::dir(root, id).join(FILE)
}

/// The attachment of `id`'s current run, if any.
pub fn load(root: &Path, id: &str) -> Option<Attachment> {
    let bytes = std::fs::read(file(root, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn save(root: &Path, id: &str, a: &Attachment) -> Result<()> {
    let p = file(root, id);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(a).expect("json"))
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
}

/// Every container of the store attached now, with its attachment; those
/// on `network` only, unless it is empty.
pub fn attached(root: &Path, network: &str) -> Vec<(String, Attachment)> {
    // A container whose record cannot be read is still attached.
    let (records, broken) = record::list_all(root).unwrap_or_default();
    records
        .into_iter()
        .map(|r| r.id)
        .chain(broken.into_iter().map(|(id, _)| id))
        .filter_map(|id| load(root, &id).map(|a| (id, a)))
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
        ifname: IFNAME,
        runtime_config: &a.runtime_config,
    }
}

impl Engine {
    /// Where `id`'s network namespace is pinned during a run.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.config.state.join("netns").join(id)
    }

    /// Attaches `rec` for a run (a no-op unless its network mode is a
    /// network): pins its netns, publishes its ports and runs CNI ADD,
    /// then writes its /etc/hosts and its peers'. Undone on failure.
    pub(crate) fn connect(&self, rec: &Record) -> Result<()> {
        let mode = rec.network_mode();
        if let Some(target) = mode.strip_prefix(CONTAINER_MODE) {
            return self.join_network_of(rec, target);
        }
        if !is_attached_mode(mode) {
            return Ok(());
        }
        let root = self.root();
        let net = self.ensure_network(mode)?;
        let pin = self.netns_path(&rec.id);
        let mut names = vec![rec.name.clone(), rec.id[..12].to_string()];
        names.extend(rec.options.network_aliases.iter().cloned());
        let att = {
            let _lock = super::flock(&super::dir(root).join(".attach.lock"))?;
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
            let att = Attachment {
                network: net.name.clone(),
                netns: pin.clone(),
                conflist: net.conflist(root, !ports.is_empty()),
                runtime_config: json!({ "portMappings": ports }),
                result: None,
                ip: None,
                mac: String::new(),
                gateway: net.gateway,
                prefix: net.subnet.prefix_len(),
                ports,
                names,
            };
            if let Err(e) = save(root, &rec.id, &att) {
                let _ = netns::unpin(&pin);
                return Err(e);
            }
            att
        };
        let inv = Invocation {
            container_id: &rec.id,
            netns: &pin,
            ifname: IFNAME,
            runtime_config: &att.runtime_config,
        };
        let added = cni::add(&att.conflist, &inv).and_then(|result| {
            let mut att = att.clone();
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
            self.refresh_hosts(&net)?;
            Ok(())
        });
        if let Err(e) = added {
            let _ = self.disconnect(&rec.id);
            return Err(e);
        }
        tracing::debug!(id = rec.id, network = net.name, "attached");
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

    /// Detaches `id`'s run: CNI DEL (its address and ports released), its
    /// netns unpinned, its peers' hosts rewritten. Nothing attached is no
    /// error; a failed DEL keeps the attachment for the next try.
    pub(crate) fn disconnect(&self, id: &str) -> Result<()> {
        let root = self.root();
        let pin = self.netns_path(id);
        let Some(att) = load(root, id) else {
            return netns::unpin(&pin);
        };
        cni::del(&att.conflist, &invocation(id, &att), att.result.as_ref())?;
        netns::unpin(&att.netns)?;
        let p = file(root, id);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(&p, e));
            }
        }
        if let Ok(net) = super::find(root, &att.network) {
            self.refresh_hosts(&net)?;
        }
        tracing::debug!(id, network = att.network, "detached");
        Ok(())
    }

    /// `id` was renamed from `old` to `new`: the name its network's
    /// members know it by follows.
    pub(crate) fn renamed(&self, id: &str, old: &str, new: &str) -> Result<()> {
        let root = self.root();
        let Some(mut att) = load(root, id) else {
            return Ok(());
        };
        for n in att.names.iter_mut().filter(|n| n.as_str() == old) {
            *n = new.to_string();
        }
        {
            let _lock = super::flock(&super::dir(root).join(".attach.lock"))?;
            save(root, id, &att)?;
        }
        match super::find(root, &att.network) {
            Ok(net) => self.refresh_hosts(&net),
            Err(_) => Ok(()),
        }
    }

    /// Rewrites /etc/hosts of every container attached to `net`: each
    /// lists the others on a network that resolves names.
    fn refresh_hosts(&self, net: &Network) -> Result<()> {
        let root = self.root();
        let _lock = super::flock(&super::dir(root).join(".attach.lock"))?;
        let members = attached(root, &net.name);
        for (id, att) in &members {
            let Ok(rec) = record::load(root, id) else {
                continue;
            };
            let peers: Vec<Entry> = if net.resolves_names() {
                members
                    .iter()
                    .filter(|(other, a)| other != id && a.ip.is_some())
                    .map(|(_, a)| Entry {
                        ip: a.ip.expect("filtered").to_string(),
                        names: a.names.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            self.write_hosts(&rec, att.ip, Some(att.gateway), &peers)?;
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
