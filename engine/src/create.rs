//! `create`: a new container from an image (or a bundle) and the user's
//! options: its id and unique name, its directory with the overlay and the
//! final spec (options applied, so every later start runs the same thing),
//! and its record. A failed create leaves nothing behind.

use std::time::SystemTime;

use amphi_runtime::bundle::Bundle;
use serde_json::{json, Value};

use crate::bail;
use crate::bundle::{self, write};
use crate::error::{Context, Error, Result};
use crate::options::RunOptions;
use crate::record::{self, ProcessId, Record, RunState};
use crate::restart::Policy;
use crate::{flags, mounts, names, network, units, Engine};

/// Docker's default grace period of `stop`.
const DEFAULT_STOP_TIMEOUT: u64 = 10;

impl Engine {
    /// Creates a container (status `created`) from `opts`: `rest[0]` is the
    /// image (unless `bundle` is set) and the rest its command.
    pub fn create(&self, opts: &RunOptions) -> Result<Record> {
        self.create_as(opts, None)
    }

    /// Creates a container that this process starts at once (`amphi
    /// run`): recorded as its creator, so that should this process die
    /// before the run is prepared, the next command cleans it up (removes
    /// it for `--rm`) instead of leaving it, and its rootfs mount, forever.
    pub fn create_to_run(&self, opts: &RunOptions) -> Result<Record> {
        self.create_as(opts, Some(ProcessId::current()))
    }

    fn create_as(&self, opts: &RunOptions, creator: Option<ProcessId>) -> Result<Record> {
        tracing::debug!("creating");
        let mut settled = opts.clone();
        settled.settle_networks();
        let opts = &settled;
        check(opts)?;
        if let Some(f) = &opts.cidfile {
            if f.exists() {
                bail!(
                    "the container id file {} exists: is another container using it? remove it first",
                    f.display()
                );
            }
        }
        let root = self.root();
        let _names = names::lock_names(root)?;
        let name = match &opts.name {
            Some(n) => {
                names::validate_name(n)?;
                if let Some(other) = record::list(root)?.iter().find(|r| &r.name == n) {
                    return Err(Error::NameInUse(n.clone(), other.id.clone()));
                }
                n.clone()
            }
            None => names::random_name()?,
        };
        let id = names::new_id()?;
        let dir = record::dir(root, &id);
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        match self.make(&id, &name, opts, creator) {
            Ok(rec) => Ok(rec),
            Err(e) => {
                let _ = bundle::remove(root, &id);
                Err(e)
            }
        }
    }

    fn make(
        &self,
        id: &str,
        name: &str,
        opts: &RunOptions,
        creator: Option<ProcessId>,
    ) -> Result<Record> {
        let root = self.root();
        let mut rest = opts.rest.clone();
        // `loaded`: the bundle the final spec is made from, the user's or
        // the image's.
        let (image, digest, image_id, image_config, args, loaded) = match &opts.bundle {
            Some(src) => {
                // The user's bundle, its rootfs used in place (see
                // `bundle::runtime_bundle`); `place` writes the final spec.
                let user = Bundle::load(src)?;
                let image = user.dir.display().to_string();
                (image, None, None, Value::Null, Some(rest), user)
            }
            None => {
                if rest.is_empty() {
                    bail!("give an IMAGE or --bundle DIR");
                }
                let image = rest.remove(0);
                // --entrypoint replaces the image's Entrypoint and drops its
                // Cmd; an empty one only clears the Entrypoint, so the
                // command given (else the image's Cmd) runs, as Docker's.
                let cleared = opts.entrypoint.as_deref() == Some("");
                let (cmd, args) = match &opts.entrypoint {
                    Some(_) if cleared => (rest.clone(), (!rest.is_empty()).then_some(rest)),
                    Some(e) => {
                        let all: Vec<String> = std::iter::once(e.clone()).chain(rest).collect();
                        (all.clone(), Some(all))
                    }
                    None => (rest, None),
                };
                let p = bundle::prepare(root, id, &image, &cmd)?;
                let args = match args {
                    None if cleared => {
                        let image_cmd: Vec<String> = p.config["config"]["Cmd"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.as_str().map(String::from))
                            .collect();
                        if image_cmd.is_empty() {
                            bail!("no command: --entrypoint \"\" clears the Entrypoint, and the image {image} has no Cmd");
                        }
                        Some(image_cmd)
                    }
                    a => a,
                };
                (
                    image,
                    Some(p.manifest),
                    Some(p.config_digest),
                    p.config,
                    args,
                    p.bundle,
                )
            }
        };
        let final_bundle = flags::apply(loaded, id, opts, args.as_deref())?;
        let mut opts = opts.clone();
        labels_from_files(&mut opts)?;
        self.network_options(&mut opts, &image_config)?;
        self.namespace_options(&mut opts)?;
        let mut made_volumes = Vec::new();
        let placed = self.place(id, &opts, &image_config, &final_bundle, &mut made_volumes);
        let (spec, mounts) = match placed {
            Ok(p) => p,
            Err(e) => {
                for v in made_volumes {
                    let _ = self.remove_volume(&v);
                }
                return Err(e);
            }
        };
        let spec = &spec;
        let opts = &opts;
        let stop_signal = opts
            .stop_signal
            .clone()
            .or_else(|| {
                image_config["config"]["StopSignal"]
                    .as_str()
                    .map(String::from)
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "SIGTERM".into());
        units::parse_signal(&stop_signal)?;
        let health = crate::health::config(&image_config, opts)?;
        let wasm = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get("run.oci.handler"))
            .is_some_and(|h| h == "wasm");
        let rec = Record {
            id: id.to_string(),
            name: name.to_string(),
            created: SystemTime::now(),
            image,
            image_digest: digest,
            image_id,
            args: spec
                .process()
                .as_ref()
                .and_then(|p| p.args().clone())
                .unwrap_or_default(),
            payload: if wasm { "wasm" } else { "native" }.into(),
            stop_signal,
            stop_timeout: opts
                .stop_timeout
                .map(|t| t.max(0) as u64)
                .unwrap_or(DEFAULT_STOP_TIMEOUT),
            options: opts.clone(),
            mounts,
            health,
            state: RunState {
                creator,
                ..RunState::default()
            },
        };
        record::save(root, &rec)?;
        tracing::debug!(id, name, "created");
        if let Some(f) = &opts.cidfile {
            write(f, &rec.id)?;
        }
        Ok(rec)
    }
}

impl Engine {
    /// Settles the network options: the default network for an image
    /// container, the network checked to exist, `-P` as the image's
    /// exposed ports, and what the mode forbids refused.
    fn network_options(&self, opts: &mut RunOptions, image_config: &Value) -> Result<()> {
        if opts.network.is_none() && opts.bundle.is_none() {
            opts.network = Some(network::DEFAULT.into());
        }
        let mode = opts.network.clone().unwrap_or_default();
        let exposed = exposed_ports(&opts.expose)?;
        if opts.publish_all {
            let image = image_config["config"]["ExposedPorts"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone());
            for k in image.chain(exposed) {
                if !opts.publish.contains(&k) {
                    opts.publish.push(k);
                }
            }
        }
        for p in &opts.publish {
            network::ports::parse(p)?;
        }
        match mode.as_str() {
            "host" | "none" | "" => {
                if !opts.network_aliases.is_empty() {
                    bail!("network-scoped aliases are only supported for user-defined networks");
                }
                if !opts.publish.is_empty() {
                    if mode == "host" {
                        tracing::warn!(
                            "published ports are discarded when using host network mode"
                        );
                        opts.publish.clear();
                    } else if opts.publish_all && mode == "none" {
                        opts.publish.clear();
                    } else {
                        bail!(
                            "conflicting options: port publishing and --network {}",
                            if mode.is_empty() {
                                "of the bundle's spec"
                            } else {
                                &mode
                            }
                        );
                    }
                }
            }
            m if m.starts_with(network::CONTAINER_MODE) => {
                let target = &m[network::CONTAINER_MODE.len()..];
                let other = self.container(target)?;
                let given = [
                    (!opts.publish.is_empty(), "port publishing"),
                    (!opts.network_aliases.is_empty(), "--network-alias"),
                    (
                        !opts.dns.is_empty()
                            || !opts.dns_search.is_empty()
                            || !opts.dns_options.is_empty(),
                        "--dns",
                    ),
                    (!opts.add_hosts.is_empty(), "--add-host"),
                    (opts.hostname.is_some(), "--hostname"),
                ];
                if let Some((_, what)) = given.iter().find(|(g, _)| *g) {
                    bail!("conflicting options: {what} and --network container:{target}");
                }
                // By id: a rename or a new container of that name is not it.
                opts.network = Some(format!("{}{}", network::CONTAINER_MODE, other.id));
            }
            network::DEFAULT => {
                if !opts.network_aliases.is_empty() {
                    bail!("network-scoped aliases are only supported for user-defined networks");
                }
            }
            name => {
                // Named as `network ls` shows it (an id works too).
                opts.network = Some(self.network(name)?.name);
            }
        }
        // More networks (`--network` again): each a network that exists,
        // once, after a first that is one too.
        let mut extra = Vec::new();
        for name in std::mem::take(&mut opts.extra_networks) {
            let first = opts.network.as_deref().unwrap_or("");
            if !network::is_attached_mode(first) {
                bail!("conflicting options: --network {first} and --network {name} (only networks can be combined)");
            }
            let n = self.network(&name)?.name;
            if n == first || extra.contains(&n) {
                bail!("--network {name} is given twice");
            }
            extra.push(n);
        }
        opts.extra_networks = extra;
        for h in &opts.add_hosts {
            network::hosts::parse_add_host(h)?;
        }
        Ok(())
    }

    /// The final spec: the network namespace for the mode, the mounts
    /// (volumes made and filled on first use, recorded in `made`), and the
    /// container's /etc files.
    fn place(
        &self,
        id: &str,
        opts: &RunOptions,
        image_config: &Value,
        bundle: &Bundle,
        made: &mut Vec<String>,
    ) -> Result<(
        amphi_runtime::oci_spec::runtime::Spec,
        Vec<mounts::MountPoint>,
    )> {
        let root = self.root();
        let dir = record::dir(root, id);
        let mut v = serde_json::to_value(&bundle.spec).expect("a spec serialises");
        let mode = opts.network.as_deref().unwrap_or("");
        if !mode.is_empty() {
            let mut ns: Vec<Value> =
                serde_json::from_value(v["linux"]["namespaces"].take()).unwrap_or_default();
            ns.retain(|n| n["type"] != "network");
            match mode {
                "host" => {}
                "none" => ns.push(json!({"type": "network"})),
                _ => ns.push(json!({"type": "network", "path": self.netns_path(id)})),
            }
            v["linux"]["namespaces"] = json!(ns);
            // Another container's network: its name too, as Docker's.
            if let Some(other) = mode.strip_prefix(network::CONTAINER_MODE) {
                let name = std::fs::read_to_string(record::dir(root, other).join("hostname"));
                if let Ok(name) = name {
                    v["hostname"] = json!(name.trim());
                }
            }
        }
        self.apply_shared_namespaces(id, &mut v, opts);
        let points = mounts::resolve(opts, image_config)?;
        for m in &points {
            if let mounts::Source::Volume {
                name,
                anonymous,
                nocopy,
            } = &m.source
            {
                let existed = self.volume(name).is_ok();
                self.create_volume(name, &[], *anonymous)?;
                if !existed {
                    made.push(name.clone());
                }
                if !nocopy {
                    self.init_volume(name, &bundle.rootfs, &m.destination)?;
                }
            }
            let spec_mount = mounts::spec_mount(root, m);
            match v["mounts"].as_array_mut() {
                Some(list) => list.push(spec_mount),
                None => v["mounts"] = json!([spec_mount]),
            }
        }
        if opts.bundle.is_none() {
            let hostname = v["hostname"].as_str().unwrap_or(&id[..12]).to_string();
            write(&dir.join("hostname"), format!("{hostname}\n"))?;
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            write(
                &dir.join("resolv.conf"),
                network::hosts::resolv_conf(&host, mode == "host", opts)?,
            )?;
            network::hosts::write_hosts(&dir.join("hosts"), None, None, &hostname, &[], opts, &[])?;
        }
        let spec = serde_json::from_value(v).context("applying mounts to the spec")?;
        write(
            &dir.join("config.json"),
            serde_json::to_vec_pretty(&spec).expect("json"),
        )?;
        Ok((spec, points))
    }
}

/// `--label-file`s' labels, then `--label`'s (which win, being later).
fn labels_from_files(opts: &mut RunOptions) -> Result<()> {
    if opts.label_files.is_empty() {
        return Ok(());
    }
    let mut labels = Vec::new();
    for f in &opts.label_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --label-file {}", f.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('=') {
                bail!(
                    "--label-file {} line {}: a label needs a name",
                    f.display(),
                    n + 1
                );
            }
            labels.push(line.to_string());
        }
    }
    labels.append(&mut opts.labels);
    opts.labels = labels;
    Ok(())
}

/// `--expose PORT[-PORT][/PROTO]`, each port as `PORT/PROTO`.
pub(crate) fn exposed_ports(expose: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in expose {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        if !matches!(proto, "tcp" | "udp") {
            bail!("bad --expose {e:?}: the protocol is tcp or udp");
        }
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else {
            bail!("bad --expose {e:?}: use PORT[-PORT][/tcp|udp]");
        };
        if lo == 0 || hi < lo {
            bail!("bad --expose {e:?}: use PORT[-PORT][/tcp|udp]");
        }
        out.extend((lo..=hi).map(|p| format!("{p}/{proto}")));
    }
    Ok(out)
}

/// Options that are wrong whatever the image: one line naming the fault.
fn check(opts: &RunOptions) -> Result<()> {
    if let Some(t) = &opts.timeout {
        units::parse_duration(t)?;
    }
    let policy = Policy::parse(opts.restart.as_deref().unwrap_or("no"))?;
    if policy != Policy::No && opts.rm {
        bail!("conflicting options: --restart and --rm");
    }
    if let Some(s) = &opts.stop_signal {
        units::parse_signal(s)?;
    }
    if let Some(t) = opts.stop_timeout {
        if t < 0 {
            bail!("bad --stop-timeout {t}: must be 0 or more seconds");
        }
    }
    for l in &opts.labels {
        if l.is_empty() || l.starts_with('=') {
            bail!("bad --label {l:?}: use KEY=VALUE");
        }
    }
    Ok(())
}

impl Record {
    /// The restart policy (checked at create).
    pub fn policy(&self) -> Policy {
        Policy::parse(self.options.restart.as_deref().unwrap_or("no")).unwrap_or_default()
    }
}
