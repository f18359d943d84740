//! `amphi system df` and `system prune`.

use amphi_engine::Engine;
use anyhow::Result;
use clap::Subcommand;

/// System subcommands.
#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show what images and containers take on disk.
    Df,
    /// Remove stopped containers and unused data.
    Prune {
        /// Also images no container uses.
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

/// "1.2MB", as Docker's HumanSize (decimal units, four digits).
fn size(n: u64) -> String {
    crate::format::decimal_size(n, 4)
}

pub fn run(engine: &Engine, command: SystemCommand) -> Result<u8> {
    match command {
        SystemCommand::Df => {
            let du = engine.disk_usage()?;
            let pct = |r: u64, s: u64| (r * 100).checked_div(s).unwrap_or(0);
            println!(
                "{:<15}{:<10}{:<10}{:<12}RECLAIMABLE",
                "TYPE", "TOTAL", "ACTIVE", "SIZE"
            );
            for (name, u) in [
                ("Images", &du.images),
                ("Containers", &du.containers),
                ("Local Volumes", &du.volumes),
            ] {
                println!(
                    "{:<15}{:<10}{:<10}{:<12}{} ({}%)",
                    name,
                    u.total,
                    u.active,
                    size(u.size),
                    size(u.reclaimable),
                    pct(u.reclaimable, u.size)
                );
            }
            println!("{:<15}{:<10}{:<10}{:<12}0B", "Build Cache", 0, 0, "0B");
            Ok(0)
        }
        SystemCommand::Prune { all, force } => {
            let what = if all {
                "all stopped containers and all images without a container"
            } else {
                "all stopped containers"
            };
            prune(engine, what, force, true, all)
        }
    }
}

/// Asks (unless `force`) and prunes, printing what went as Docker does.
pub fn prune(
    engine: &Engine,
    what: &str,
    force: bool,
    containers: bool,
    images: bool,
) -> Result<u8> {
    if !force {
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let p = engine.prune_parts(containers, images)?;
    if !p.containers.is_empty() {
        println!("Deleted Containers:");
        for c in &p.containers {
            println!("{c}");
        }
    }
    if !p.images.is_empty() {
        println!("Untagged Images:");
        for i in &p.images {
            println!("untagged: {i}");
        }
    }
    println!("Total reclaimed space: {}", size(p.bytes));
    Ok(0)
}
