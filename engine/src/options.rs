//! What a user asks of a new container: `amphi run`'s options, as Docker's
//! CLI takes them. Kept in the container's record, so `start` after a stop
//! or a reboot runs the same container again, and `inspect` shows them.
//! With the `clap` feature these are also the command line's flags.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

impl RunOptions {
    /// Moves the command line's `--network`s into `network` (the first)
    /// and `extra_networks` (the rest).
    pub fn settle_networks(&mut self) {
        let mut given = std::mem::take(&mut self.network_flags).into_iter();
        if let Some(first) = given.next() {
            self.network = Some(first);
        }
        self.extra_networks.extend(given);
    }
}

/// The options of a new container (`amphi run`'s flags and operands).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct RunOptions {
    /// Remove the container when it exits.
    #[cfg_attr(feature = "clap", arg(long))]
    pub rm: bool,
    /// Run in the background, printing the container's id.
    #[cfg_attr(feature = "clap", arg(short = 'd', long))]
    pub detach: bool,
    /// Keep stdin open (without it the container's stdin is /dev/null).
    #[cfg_attr(feature = "clap", arg(short = 'i', long))]
    pub interactive: bool,
    /// Give the container a terminal, relayed to ours.
    #[cfg_attr(feature = "clap", arg(short = 't', long))]
    pub tty: bool,
    /// The container's name (default: a random one); unique, usable as its id.
    #[cfg_attr(feature = "clap", arg(long))]
    pub name: Option<String>,
    /// Set an environment variable (K=V).
    #[cfg_attr(feature = "clap", arg(short = 'e', long = "env"))]
    pub env: Vec<String>,
    /// Read environment variables from a file: one KEY=VALUE per line (a
    /// bare KEY takes the caller's value; `#` lines are comments). Read
    /// before `-e`, which wins.
    #[cfg_attr(feature = "clap", arg(long = "env-file"))]
    pub env_files: Vec<PathBuf>,
    /// Set a label (K=V, or K for an empty value).
    #[cfg_attr(feature = "clap", arg(short = 'l', long = "label"))]
    pub labels: Vec<String>,
    /// Read labels from a file: one KEY=VALUE per line (`#` lines are
    /// comments). Read before `--label`, which wins.
    #[cfg_attr(feature = "clap", arg(long = "label-file"))]
    pub label_files: Vec<PathBuf>,
    /// A volume or bind mount: NAME:DST[:ro], /HOST/PATH:DST[:ro], or DST
    /// (an anonymous volume).
    #[cfg_attr(feature = "clap", arg(short = 'v', long = "volume"))]
    pub volumes: Vec<String>,
    /// A mount: type=bind|volume|tmpfs,source=S,target=T[,readonly][,...].
    #[cfg_attr(feature = "clap", arg(long = "mount"))]
    pub mounts: Vec<String>,
    /// A tmpfs mount: PATH[:OPTIONS] (e.g. /run:size=64m).
    #[cfg_attr(feature = "clap", arg(long = "tmpfs"))]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container.
    #[cfg_attr(feature = "clap", arg(short = 'w', long))]
    pub workdir: Option<String>,
    /// Hostname of the container.
    #[cfg_attr(feature = "clap", arg(long))]
    pub hostname: Option<String>,
    /// bridge (the default network), a network's name, host (the host's
    /// network) or none (only loopback). Given again, another network as
    /// well (the first keeps the default route and the ports), as Docker's.
    #[cfg_attr(
        feature = "clap",
        arg(long = "network", alias = "net", value_name = "NETWORK")
    )]
    #[serde(skip)]
    pub network_flags: Vec<String>,
    /// The network mode (the first `--network`; see
    /// [`RunOptions::settle_networks`]).
    #[cfg_attr(feature = "clap", arg(skip))]
    pub network: Option<String>,
    /// Another name other containers of the network know this one by.
    #[cfg_attr(feature = "clap", arg(long = "network-alias"))]
    pub network_aliases: Vec<String>,
    /// Networks joined with `network connect`, after `network`, each on
    /// an interface of its own (eth1, eth2, ...).
    #[cfg_attr(feature = "clap", arg(skip))]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_networks: Vec<String>,
    /// Publish a port: [IP:][HOST[-HOST]:]CTR[-CTR][/tcp|udp].
    #[cfg_attr(feature = "clap", arg(short = 'p', long = "publish"))]
    pub publish: Vec<String>,
    /// Expose a port or a range (PORT[-PORT][/tcp|udp]) without publishing
    /// it: `-P` publishes these too, as the image's ExposedPorts.
    #[cfg_attr(feature = "clap", arg(long = "expose"))]
    pub expose: Vec<String>,
    /// Publish every port the image exposes on an ephemeral host port.
    #[cfg_attr(feature = "clap", arg(short = 'P', long = "publish-all"))]
    pub publish_all: bool,
    /// A DNS server for the container's resolv.conf.
    #[cfg_attr(feature = "clap", arg(long = "dns"))]
    pub dns: Vec<String>,
    /// A DNS search domain.
    #[cfg_attr(feature = "clap", arg(long = "dns-search"))]
    pub dns_search: Vec<String>,
    /// A resolv.conf option (e.g. ndots:2).
    #[cfg_attr(feature = "clap", arg(long = "dns-option"))]
    pub dns_options: Vec<String>,
    /// An /etc/hosts entry: HOST:IP (IP may be host-gateway).
    #[cfg_attr(feature = "clap", arg(long = "add-host"))]
    pub add_hosts: Vec<String>,
    /// Memory, CPU and process limits (`update` takes the same flags).
    #[cfg_attr(feature = "clap", command(flatten))]
    #[serde(flatten)]
    pub resources: Resources,
    /// The size of /dev/shm, e.g. 256m (default 64m).
    #[cfg_attr(feature = "clap", arg(long))]
    pub shm_size: Option<String>,
    /// A namespaced kernel parameter: KEY=VALUE (net.*, kernel.shm*,
    /// kernel.msg*, kernel.sem, fs.mqueue.*).
    #[cfg_attr(feature = "clap", arg(long = "sysctl"))]
    pub sysctls: Vec<String>,
    /// The OOM killer's preference for this container (-1000 to 1000).
    #[cfg_attr(feature = "clap", arg(long, allow_hyphen_values = true))]
    pub oom_score_adj: Option<i32>,
    /// The pid namespace: `host` shares the host's, `container:NAME`
    /// another running container's (default: its own).
    #[cfg_attr(feature = "clap", arg(long))]
    pub pid: Option<String>,
    /// The IPC namespace: `private` (the default) is its own, `shareable`
    /// its own that others may join, `container:NAME` a shareable
    /// container's (with its /dev/shm), `none` its own without /dev/shm,
    /// `host` the host's.
    #[cfg_attr(feature = "clap", arg(long))]
    pub ipc: Option<String>,
    /// The UTS namespace (hostname): `host` shares the host's.
    #[cfg_attr(feature = "clap", arg(long))]
    pub uts: Option<String>,
    /// The container's cgroup parent: a systemd slice (`NAME.slice`: the
    /// container is the transient scope `amphi-<id>.scope` in it, through
    /// systemd, as Docker's systemd driver does) or a cgroupfs path (the
    /// container is `<path>/<id>`). Default: `amphi/<id>`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cgroup_parent: Option<String>,
    /// Mount the rootfs read-only.
    #[cfg_attr(feature = "clap", arg(long))]
    pub read_only: bool,
    /// Kill the container (SIGKILL, exit 137) when this time is up, e.g. 10s.
    /// (A negative one reaches the parser, which names the fault.)
    #[cfg_attr(feature = "clap", arg(long, allow_hyphen_values = true))]
    pub timeout: Option<String>,
    /// Restart policy: no, on-failure[:MAX], always or unless-stopped.
    #[cfg_attr(feature = "clap", arg(long))]
    pub restart: Option<String>,
    /// Run a minimal init as pid 1 that reaps zombies and forwards signals.
    #[cfg_attr(feature = "clap", arg(long))]
    pub init: bool,
    /// The signal `stop` sends first (default: the image's, else SIGTERM).
    #[cfg_attr(feature = "clap", arg(long))]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[cfg_attr(feature = "clap", arg(long, allow_hyphen_values = true))]
    pub stop_timeout: Option<i64>,
    /// A health check: a shell command run in the container every
    /// interval (exit 0: healthy); replaces the image's HEALTHCHECK.
    #[cfg_attr(feature = "clap", arg(long))]
    pub health_cmd: Option<String>,
    /// Time between health checks, e.g. 30s (default: the image's, else 30s).
    #[cfg_attr(feature = "clap", arg(long))]
    pub health_interval: Option<String>,
    /// A check running longer fails, e.g. 30s.
    #[cfg_attr(feature = "clap", arg(long))]
    pub health_timeout: Option<String>,
    /// Failures this soon after the start do not count, e.g. 10s.
    #[cfg_attr(feature = "clap", arg(long))]
    pub health_start_period: Option<String>,
    /// Failures in a row that make it unhealthy (default 3).
    #[cfg_attr(feature = "clap", arg(long))]
    pub health_retries: Option<u32>,
    /// No health check, not even the image's.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_healthcheck: bool,
    /// Write the container's id to this file (which must not exist).
    #[cfg_attr(feature = "clap", arg(long))]
    pub cidfile: Option<PathBuf>,
    /// Run this OCI runtime bundle (config.json + rootfs).
    #[cfg_attr(feature = "clap", arg(long))]
    pub bundle: Option<PathBuf>,
    /// When to pull the image first, as Docker's `--pull`: missing (the
    /// default), always, or never.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_parser = ["always", "missing", "never"])
    )]
    pub pull: Option<String>,
    /// The platform (OS/ARCH[/VARIANT]) to pull from an index.
    #[cfg_attr(feature = "clap", arg(long))]
    pub platform: Option<String>,
    /// Add a capability (e.g. NET_ADMIN, or ALL).
    #[cfg_attr(feature = "clap", arg(long = "cap-add"))]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL).
    #[cfg_attr(feature = "clap", arg(long = "cap-drop"))]
    pub cap_drop: Vec<String>,
    /// A spec annotation: KEY=VALUE (as podman's --annotation).
    #[cfg_attr(feature = "clap", arg(long = "annotation"))]
    pub annotations: Vec<String>,
    /// Wasm: a directory the guest gets as a preopen, PATH[::NAME][:ro|:rw]
    /// (repeatable; replaces the rootfs as /), or `none` for no preopen.
    /// Sets the io.amphi.wasm.preopens annotation.
    #[cfg_attr(feature = "clap", arg(long = "wasm-preopen"))]
    pub wasm_preopens: Vec<String>,
    /// seccomp=unconfined|PROFILE.json, no-new-privileges.
    #[cfg_attr(feature = "clap", arg(long = "security-opt"))]
    pub security_opt: Vec<String>,
    /// Every capability and device, no seccomp filter or masked paths.
    #[cfg_attr(feature = "clap", arg(long))]
    pub privileged: bool,
    /// A host device in the container: HOST[:CONTAINER][:rwm].
    #[cfg_attr(feature = "clap", arg(long = "device"))]
    pub devices: Vec<String>,
    /// The user: UID[:GID] or NAME[:GROUP] (from the image's /etc/passwd).
    #[cfg_attr(feature = "clap", arg(short = 'u', long))]
    pub user: Option<String>,
    /// A supplementary group (GID or name from the image's /etc/group).
    #[cfg_attr(feature = "clap", arg(long = "group-add"))]
    pub group_add: Vec<String>,
    /// A resource limit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[cfg_attr(feature = "clap", arg(long = "ulimit"))]
    pub ulimits: Vec<String>,
    /// Run this instead of the image's Entrypoint (its Cmd is dropped).
    #[cfg_attr(feature = "clap", arg(long))]
    pub entrypoint: Option<String>,
    /// IMAGE [CMD ARGS...], or with --bundle: CMD ARGS... replacing the spec's args.
    /// As Docker parses: options come before IMAGE (an unknown one is an
    /// error naming it, never an image name); everything after IMAGE,
    /// flags too, is the command's.
    #[cfg_attr(feature = "clap", arg(trailing_var_arg = true))]
    pub rest: Vec<String>,
}

/// A container's resource limits, as `run` and `update` take them; `None`
/// leaves a limit as it is (none, for a new container).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct Resources {
    /// Memory limit, e.g. 64m.
    #[cfg_attr(feature = "clap", arg(short = 'm', long))]
    pub memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cpus: Option<String>,
    /// Maximum number of processes.
    #[cfg_attr(feature = "clap", arg(long))]
    pub pids_limit: Option<i64>,
    /// Memory plus swap: the limit of both together (-1: unlimited swap);
    /// needs --memory. Default: no swap beyond --memory.
    #[cfg_attr(feature = "clap", arg(long, allow_hyphen_values = true))]
    pub memory_swap: Option<String>,
    /// A soft memory limit, reclaimed to under contention.
    #[cfg_attr(feature = "clap", arg(long))]
    pub memory_reservation: Option<String>,
    /// The CPU weight relative to other containers (default 1024).
    #[cfg_attr(feature = "clap", arg(short = 'c', long))]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on, e.g. 0-1 or 0,2.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use, e.g. 0.
    #[cfg_attr(feature = "clap", arg(long))]
    pub cpuset_mems: Option<String>,
}

impl Resources {
    /// These limits with those `other` gives in their place.
    pub fn overlaid(&self, other: &Resources) -> Resources {
        let pick = |mine: &Option<String>, theirs: &Option<String>| {
            theirs.clone().or_else(|| mine.clone())
        };
        Resources {
            memory: pick(&self.memory, &other.memory),
            cpus: pick(&self.cpus, &other.cpus),
            pids_limit: other.pids_limit.or(self.pids_limit),
            memory_swap: pick(&self.memory_swap, &other.memory_swap),
            memory_reservation: pick(&self.memory_reservation, &other.memory_reservation),
            cpu_shares: other.cpu_shares.or(self.cpu_shares),
            cpuset_cpus: pick(&self.cpuset_cpus, &other.cpuset_cpus),
            cpuset_mems: pick(&self.cpuset_mems, &other.cpuset_mems),
        }
    }
}
