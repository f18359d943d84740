//! `amphi network create|ls|inspect|rm|prune` and `amphi volume
//! create|ls|inspect|rm|prune`, as Docker's.

use amphi_engine::network::CreateNetwork;
use amphi_engine::Engine;
use anyhow::Result;
use clap::Subcommand;

use crate::containers::each;

/// Network subcommands.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Make a bridge network.
    Create {
        /// Its IPv4 subnet (default: a free one).
        #[arg(long)]
        subnet: Option<String>,
        /// Its gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// The driver: only bridge.
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// A label, K=V.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Its name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON.
    Inspect {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network: an interface of its own there, now if it runs and at every start.
    Connect {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Disconnect a container from a network it joined with connect.
    Disconnect {
        /// Accepted for Docker's sake (amphi's disconnect never waits on the container).
        #[arg(short, long)]
        force: bool,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Remove networks no container uses.
    Prune {
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

/// Volume subcommands.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (a random name without one).
    Create {
        /// A label, K=V.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Its name.
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes no container uses.
    #[command(alias = "remove")]
    Rm {
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove anonymous volumes no container uses (all unused with -a).
    Prune {
        /// Named volumes too.
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

fn confirm(force: bool, what: &str) -> Result<bool> {
    if force {
        return Ok(true);
    }
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn print_json(values: Vec<serde_json::Value>) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Array(values))?
    );
    Ok(())
}

/// Runs a network subcommand.
pub fn network(engine: &Engine, command: NetworkCommand) -> Result<u8> {
    match command {
        NetworkCommand::Connect { network, container } => {
            engine.connect_network(&network, &container)?;
            Ok(0)
        }
        NetworkCommand::Disconnect {
            force: _,
            network,
            container,
        } => {
            engine.disconnect_network(&network, &container)?;
            Ok(0)
        }
        NetworkCommand::Create {
            subnet,
            gateway,
            driver,
            labels,
            name,
        } => {
            if driver != "bridge" {
                anyhow::bail!("bad --driver {driver:?}: amphi's networks are bridges");
            }
            let n = engine.create_network(&CreateNetwork {
                name,
                subnet,
                gateway,
                labels,
            })?;
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCommand::Ls { quiet } => {
            // The default network is listed once it exists, as `host` and `none` always are.
            let nets = engine.networks()?;
            if quiet {
                for n in &nets {
                    println!("{}", n.name);
                }
                return Ok(0);
            }
            println!(
                "{:<14}{:<20}{:<10}{:<18}SCOPE",
                "NETWORK ID", "NAME", "DRIVER", "SUBNET"
            );
            for n in &nets {
                println!(
                    "{:<14}{:<20}{:<10}{:<18}local",
                    &n.id[..12],
                    n.name,
                    "bridge",
                    n.subnet.to_string()
                );
            }
            println!("{:<14}{:<20}{:<10}{:<18}local", "host", "host", "host", "");
            println!("{:<14}{:<20}{:<10}{:<18}local", "none", "none", "null", "");
            Ok(0)
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            let code = each(&names, |n| {
                out.push(engine.inspect_network(n)?);
                Ok(())
            })?;
            print_json(out)?;
            Ok(code)
        }
        NetworkCommand::Rm { names } => each(&names, |n| {
            println!("{}", engine.remove_network(n)?);
            Ok(())
        }),
        NetworkCommand::Prune { force } => {
            if confirm(
                force,
                "all custom networks not used by at least one container",
            )? {
                let gone = engine.prune_networks()?;
                if !gone.is_empty() {
                    println!("Deleted Networks:");
                    for n in gone {
                        println!("{n}");
                    }
                }
            }
            Ok(0)
        }
    }
}

/// Runs a volume subcommand.
pub fn volume(engine: &Engine, command: VolumeCommand) -> Result<u8> {
    match command {
        VolumeCommand::Create { labels, name } => {
            let (name, anonymous) = match name {
                Some(n) => (n, false),
                None => (amphi_engine::names::new_id()?, true),
            };
            println!("{}", engine.create_volume(&name, &labels, anonymous)?.name);
            Ok(0)
        }
        VolumeCommand::Ls { quiet } => {
            let vols = engine.volumes()?;
            if !quiet {
                println!("{:<10}VOLUME NAME", "DRIVER");
            }
            for v in vols {
                if quiet {
                    println!("{}", v.name);
                } else {
                    println!("{:<10}{}", "local", v.name);
                }
            }
            Ok(0)
        }
        VolumeCommand::Inspect { names } => {
            let mut out = Vec::new();
            let code = each(&names, |n| {
                out.push(engine.inspect_volume(n)?);
                Ok(())
            })?;
            print_json(out)?;
            Ok(code)
        }
        VolumeCommand::Rm { names } => each(&names, |n| {
            engine.remove_volume(n)?;
            println!("{n}");
            Ok(())
        }),
        VolumeCommand::Prune { all, force } => {
            let what = if all {
                "all local volumes not used by at least one container"
            } else {
                "anonymous local volumes not used by at least one container"
            };
            if confirm(force, what)? {
                let gone = engine.prune_volumes(all)?;
                if !gone.is_empty() {
                    println!("Deleted Volumes:");
                    for v in gone {
                        println!("{v}");
                    }
                }
            }
            Ok(0)
        }
    }
}
