//! Networks of standalone containers, through the standard CNI plugins
//! (as nerdctl and podman use them): a network is a Linux bridge with a
//! subnet, the `bridge` plugin (host-local IPAM, NAT out) puts a
//! container's veth on it, `portmap` publishes its ports and `firewall`
//! lets its traffic through the host's FORWARD chain while keeping other
//! bridges out. A network's record lives under the store root (it
//! survives a reboot; its bridge is made again on first use); a
//! container's attachment, made for each run, in its directory.
//!
//! Map: [`cni`] (invoking plugins), [`netns`] (pinned namespaces),
//! [`subnet`] (choosing subnets and bridges), [`ports`] (`-p`),
//! `attach` (one run's ADD and DEL), [`hosts`] (`/etc/hosts` and
//! `resolv.conf`).

mod attach;
pub mod cni;
pub mod hosts;
pub mod netns;
pub mod ports;
pub mod subnet;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use attach::{is_attached_mode, load_all as attachments, Attachment, CONTAINER_MODE};

use crate::error::{Error, Result};
use crate::Engine;

/// The default network's name.
pub const DEFAULT: &str = "bridge";

/// The host-wide lock under which subnets and bridge names are chosen
/// (every amphi store of the host shares the host's addresses).
const HOST_LOCK: &str = "/run/lock/amphi-networks.lock";

/// A network, as kept in `<root>/networks/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    /// Its name (unique in the store).
    pub name: String,
    /// Its id (64 hex digits).
    pub id: String,
    /// When it was made.
    pub created: SystemTime,
    /// Its IPv4 subnet.
    pub subnet: Ipv4Net,
    /// The bridge's address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// The bridge device.
    pub bridge: String,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// Whether containers on it find each other by name (not on the
    /// default bridge, as in Docker).
    pub fn resolves_names(&self) -> bool {
        self.name != DEFAULT
    }

    /// The CNI configuration list for an attachment; `portmap` only when
    /// ports are published (an exec less for every other run).
    pub fn conflist(&self, root: &Path, publish: bool) -> Value {
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet.to_string(), "gateway": self.gateway.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir(root),
            }
        })];
        if publish {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        plugins.push(json!({"type": "firewall", "ingressPolicy": "same-bridge"}));
        json!({"cniVersion": "1.0.0", "name": self.name, "plugins": plugins})
    }
}

fn dir(root: &Path) -> PathBuf {
    root.join("networks")
}

/// Where host-local keeps the networks' leases (one directory each).
pub fn ipam_dir(root: &Path) -> PathBuf {
    dir(root).join("ipam")
}

fn path(root: &Path, name: &str) -> PathBuf {
    dir(root).join(format!("{name}.json"))
}

fn flock(path: &Path) -> Result<Flock<std::fs::File>> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::io(path, e.into()))
}

/// Every network of the store, by name.
pub fn list(root: &Path) -> Result<Vec<Network>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir(root)).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            out.push(serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!("{}: corrupt network record: {e}", p.display()))
            })?);
        }
    }
    out.sort_by(|a: &Network, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A network by name, id or unique id prefix.
pub fn find(root: &Path, query: &str) -> Result<Network> {
    let all = list(root)?;
    if let Some(n) = all.iter().find(|n| n.name == query || n.id == query) {
        return Ok(n.clone());
    }
    let prefixed: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(query)).collect();
    match prefixed.as_slice() {
        [one] if !query.is_empty() => Ok((*one).clone()),
        [] | [_] => Err(Error::Invalid(format!("network {query} not found"))),
        _ => Err(Error::Invalid(format!(
            "{query:?} matches more than one network"
        ))),
    }
}

fn save(root: &Path, n: &Network) -> Result<()> {
    let p = path(root, &n.name);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(n).expect("json"))
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
}

/// What `network create` takes.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    /// The name.
    pub name: String,
    /// The subnet (default: a free one of the pools).
    pub subnet: Option<String>,
    /// The gateway (default: the subnet's first address).
    pub gateway: Option<String>,
    /// Labels, K=V.
    pub labels: Vec<String>,
}

impl Engine {
    /// Makes a network: its subnet chosen (or checked) and its bridge made
    /// on the host, its record written. Nothing is left of a failed one.
    pub fn create_network(&self, req: &CreateNetwork) -> Result<Network> {
        let root = self.root();
        if matches!(req.name.as_str(), "host" | "none" | "default") {
            return Err(Error::Invalid(format!(
                "{} is a reserved network name",
                req.name
            )));
        }
        crate::names::validate_name(&req.name).map_err(|_| {
            Error::Invalid(format!(
                "bad network name {:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                req.name
            ))
        })?;
        let _store = flock(&dir(root).join(".lock"))?;
        if path(root, &req.name).exists() {
            return Err(Error::Invalid(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let mut labels = BTreeMap::new();
        for l in &req.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                return Err(Error::Invalid(format!("bad --label {l:?}: use KEY=VALUE")));
            }
            labels.insert(k.to_string(), v.to_string());
        }
        let id = crate::names::new_id()?;
        let _host = flock(Path::new(HOST_LOCK))?;
        // A deleted store's bridges would hold their names and subnets.
        subnet::remove_orphans();
        let mut taken = subnet::host_networks();
        taken.extend(list(root)?.iter().map(|n| n.subnet));
        let subnet = match &req.subnet {
            Some(s) => {
                let n = subnet::parse(s)?;
                if let Some(t) = taken.iter().find(|t| subnet::overlaps(t, &n)) {
                    return Err(Error::Invalid(format!(
                        "subnet {n} overlaps {t}, in use on this host"
                    )));
                }
                n
            }
            None => subnet::choose(&taken)?,
        };
        let gateway = match &req.gateway {
            Some(g) => {
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| Error::Invalid(format!("bad --gateway {g:?}")))?;
                if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() {
                    return Err(Error::Invalid(format!(
                        "gateway {g} is not a host address of {subnet}"
                    )));
                }
                g
            }
            None => subnet.hosts().next().expect("at most /30 has hosts"),
        };
        let bridge = if req.name == DEFAULT {
            (0..)
                .map(|i| format!("amphi{i}"))
                .find(|b| !subnet::link_exists(b))
                .expect("a free name")
        } else {
            format!("br-{}", &id[..12])
        };
        subnet::make_bridge(&bridge, gateway, subnet.prefix_len(), root)?;
        let n = Network {
            name: req.name.clone(),
            id,
            created: SystemTime::now(),
            subnet,
            gateway,
            bridge,
            labels,
        };
        if let Err(e) = save(root, &n) {
            let _ = subnet::delete_bridge(&n.bridge);
            return Err(e);
        }
        tracing::debug!(name = n.name, subnet = %n.subnet, bridge = n.bridge, "network created");
        Ok(n)
    }

    /// The network a container joins, ready for it: the default one made
    /// on first use, and a bridge lost in a reboot made again.
    pub fn ensure_network(&self, name: &str) -> Result<Network> {
        let root = self.root();
        let n = match find(root, name) {
            Ok(n) => n,
            Err(_) if name == DEFAULT => match self.create_network(&CreateNetwork {
                name: DEFAULT.into(),
                ..Default::default()
            }) {
                Ok(n) => n,
                // Made by another command meanwhile.
                Err(_) if path(root, DEFAULT).exists() => find(root, DEFAULT)?,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        if !subnet::link_exists(&n.bridge) {
            let _host = flock(Path::new(HOST_LOCK))?;
            if !subnet::link_exists(&n.bridge) {
                if let Some(t) = subnet::host_networks()
                    .iter()
                    .find(|t| subnet::overlaps(t, &n.subnet))
                {
                    return Err(Error::Invalid(format!(
                        "network {}: its subnet {} now overlaps {t} on this host",
                        n.name, n.subnet
                    )));
                }
                subnet::make_bridge(&n.bridge, n.gateway, n.subnet.prefix_len(), root)?;
            }
        }
        Ok(n)
    }

    /// The store's networks.
    pub fn networks(&self) -> Result<Vec<Network>> {
        list(self.root())
    }

    /// A network by name or id.
    pub fn network(&self, query: &str) -> Result<Network> {
        find(self.root(), query)
    }

    /// The containers of this store attached to `network` now.
    pub fn network_containers(&self, network: &str) -> Vec<(String, Attachment)> {
        attach::attached(self.root(), network)
    }

    /// Removes a network that no running container is on: its bridge, its
    /// leases and its record. The default network stays, as Docker's.
    pub fn remove_network(&self, query: &str) -> Result<String> {
        let root = self.root();
        let n = find(root, query)?;
        if n.name == DEFAULT {
            return Err(Error::Invalid(format!(
                "{DEFAULT} is a pre-defined network and cannot be removed"
            )));
        }
        let _store = flock(&dir(root).join(".lock"))?;
        self.containers()?; // reconciles: dead containers' attachments go
        let users = attach::attached(root, &n.name);
        if let Some((id, _)) = users.first() {
            return Err(Error::Invalid(format!(
                "network {} has active endpoints (container {})",
                n.name,
                &id[..12.min(id.len())]
            )));
        }
        self.delete_network_files(&n)?;
        Ok(n.name)
    }

    /// The bridge, leases and record of `n` (used by `rm`, `prune` and a
    /// store's cleanup).
    fn delete_network_files(&self, n: &Network) -> Result<()> {
        let root = self.root();
        subnet::delete_bridge(&n.bridge)?;
        attach::drop_isolation_rules(&n.bridge);
        let leases = ipam_dir(root).join(&n.name);
        if leases.exists() {
            std::fs::remove_dir_all(&leases).map_err(|e| Error::io(&leases, e))?;
        }
        let p = path(root, &n.name);
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))
    }

    /// Removes every user network no container of the store refers to.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let recs = self.containers()?;
        let mut out = Vec::new();
        for n in list(self.root())? {
            let used = recs.iter().any(|r| r.networks().contains(&n.name));
            if n.name == DEFAULT || used {
                continue;
            }
            self.delete_network_files(&n)?;
            out.push(n.name);
        }
        Ok(out)
    }
}

impl Engine {
    /// `network inspect`: Docker's shape (Name, Id, Driver, IPAM, the
    /// attached Containers with their addresses), plus the bridge device.
    pub fn inspect_network(&self, query: &str) -> Result<Value> {
        let n = self.network(query)?;
        let mut containers = serde_json::Map::new();
        for (id, a) in attach::attached(self.root(), &n.name) {
            let name = crate::record::load(self.root(), &id)
                .map(|r| r.name)
                .unwrap_or_default();
            // The plugins' own word on the attachment (CNI CHECK).
            let check = match &a.result {
                Some(r) => match cni::check(&a.conflist, &attach::invocation(&id, &a), r) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.to_string(),
                },
                None => "being attached".to_string(),
            };
            containers.insert(
                id,
                json!({
                    "Name": name,
                    "MacAddress": a.mac,
                    "IPv4Address": a.ip.map(|ip| format!("{ip}/{}", a.prefix)).unwrap_or_default(),
                    "IPv6Address": "",
                    "AmphiCheck": check,
                }),
            );
        }
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": crate::inspect::rfc3339(Some(n.created)),
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": false,
            "IPAM": {"Driver": "host-local", "Options": {}, "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]},
            "Internal": false,
            "Attachable": false,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": n.bridge},
            "Labels": n.labels,
        }))
    }
}

/// The attachment of `id`'s current run, if any.
pub fn attachment(root: &Path, id: &str) -> Option<Attachment> {
    attach::load(root, id)
}

/// `HostConfig.PortBindings` of the `-p` values: `{"80/tcp":
/// [{"HostIp": "", "HostPort": "8080"}]}`.
pub fn port_bindings(publish: &[String]) -> Value {
    let mut map = serde_json::Map::new();
    for p in publish {
        let Ok(r) = ports::parse(p) else { continue };
        for (ctr, host) in r.pairs() {
            let list = map
                .entry(format!("{ctr}/{}", r.protocol()))
                .or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!({"HostIp": r.host_ip(), "HostPort": host.map(|h| h.to_string()).unwrap_or_default()}));
            }
        }
    }
    Value::Object(map)
}

/// `NetworkSettings` in Docker's shape, from the current run's attachment
/// (empty addresses when it does not run).
pub fn settings(root: &Path, rec: &crate::Record) -> Value {
    let mode = rec.network_mode();
    let att = attachment(root, &rec.id);
    let ip = att
        .as_ref()
        .and_then(|a| a.ip)
        .map(|i| i.to_string())
        .unwrap_or_default();
    let gateway = att
        .as_ref()
        .filter(|a| a.ip.is_some())
        .map(|a| a.gateway.to_string())
        .unwrap_or_default();
    let prefix = att
        .as_ref()
        .filter(|a| a.ip.is_some())
        .map_or(0, |a| a.prefix);
    let mac = att.as_ref().map(|a| a.mac.clone()).unwrap_or_default();
    let mut ports = serde_json::Map::new();
    for p in att.iter().flat_map(|a| a.ports.iter()) {
        let list = ports
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| json!([]));
        if let Some(l) = list.as_array_mut() {
            l.push(json!({"HostIp": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip }, "HostPort": p.host_port.to_string()}));
        }
    }
    let net_id = find(root, mode).map(|n| n.id).unwrap_or_default();
    let name = if mode.is_empty() { "default" } else { mode };
    let mut networks = serde_json::Map::new();
    networks.insert(
        name.to_string(),
        json!({
            "NetworkID": net_id,
            "Aliases": rec.options.network_aliases,
            "IPAddress": ip,
            "IPPrefixLen": prefix,
            "Gateway": gateway,
            "MacAddress": mac,
        }),
    );
    // The networks `network connect` added, as they are attached now.
    let now = attach::load_all(root, &rec.id);
    for extra in &rec.options.extra_networks {
        let a = now.iter().find(|a| &a.network == extra);
        networks.insert(
            extra.clone(),
            json!({
                "NetworkID": find(root, extra).map(|n| n.id).unwrap_or_default(),
                "Aliases": [],
                "IPAddress": a.and_then(|a| a.ip).map(|i| i.to_string()).unwrap_or_default(),
                "IPPrefixLen": a.filter(|a| a.ip.is_some()).map_or(0, |a| a.prefix),
                "Gateway": a.filter(|a| a.ip.is_some()).map(|a| a.gateway.to_string()).unwrap_or_default(),
                "MacAddress": a.map(|a| a.mac.clone()).unwrap_or_default(),
            }),
        );
    }
    json!({
        "Bridge": "",
        "SandboxKey": att.as_ref().map(|a| a.netns.display().to_string()).unwrap_or_default(),
        "Ports": ports,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "Gateway": gateway,
        "MacAddress": mac,
        "Networks": networks,
    })
}
