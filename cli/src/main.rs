//! `amphi`: the standalone front end. Runs OCI bundles (and, later, images
//! from its own store) as native or Wasm containers.

mod image;
mod image_container;
mod process_opts;
mod run;
mod seccomp_profile;
mod security;
mod spec;
mod tty;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use amphi_runtime::{Runtime, RuntimeConfig};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Exit status for errors of amphi itself (Docker's `run` uses the same).
const EXIT_AMPHI_ERROR: u8 = 125;

#[derive(Parser)]
#[command(
    name = "amphi",
    version,
    about = "Run native and WebAssembly containers side by side"
)]
struct Cli {
    /// Store root (images, compiled Wasm modules).
    #[arg(
        long,
        env = "AMPHI_ROOT",
        default_value = "/var/lib/amphi",
        global = true
    )]
    root: PathBuf,
    /// Container state root.
    #[arg(long, env = "AMPHI_STATE", default_value = "/run/amphi", global = true)]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a container in the foreground.
    Run(Box<run::RunArgs>),
    /// List containers.
    Ps,
    /// Send a signal to a container.
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Container id.
        id: String,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Manage images in the store.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Print a detached container's output.
    Logs {
        /// Container id.
        id: String,
    },
    /// Run a command in a running container.
    Exec {
        /// Container id.
        id: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Write a container's filesystem as a flat tar.
    Export {
        /// The tar to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Container id.
        id: String,
    },
    /// Show a container's cgroup figures as JSON.
    Stats {
        /// Container id.
        id: String,
    },
}

fn main() -> ExitCode {
    // A container init is this binary re-executed: it must branch off
    // before anything else happens.
    amphi_runtime::init::run_if_init(Some(&amphi_runtime::wasm::WASMTIME));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("AMPHI_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("amphi: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(EXIT_AMPHI_ERROR)
        }
    }
}

/// A command line clap refused: help and version as clap prints them, any
/// other fault as clap's own words in one line, exit 125 (as Docker).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(EXIT_AMPHI_ERROR);
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid command line");
    eprintln!("amphi: {}", first.trim_start_matches("error: "));
    ExitCode::from(EXIT_AMPHI_ERROR)
}

fn runtime(cli: &Cli) -> Runtime {
    Runtime::new(RuntimeConfig {
        state_root: cli.state.clone(),
        wasm_cache: cli.root.join("wasm-cache"),
        ..RuntimeConfig::default()
    })
}

fn dispatch(cli: Cli) -> Result<u8> {
    let rt = runtime(&cli);
    match cli.command {
        Command::Run(args) => run::run(&rt, &cli.root, *args),
        Command::Ps => {
            println!(
                "{:<24} {:<8} {:<8} {:<8} ENTRYPOINT",
                "ID", "KIND", "STATUS", "PID"
            );
            for s in rt.list()? {
                let status = match (s.current_status(), s.exit_code) {
                    (amphi_runtime::Status::Stopped, Some(c)) => format!("exited({c})"),
                    (st, _) => st.to_string(),
                };
                println!(
                    "{:<24} {:<8} {:<8} {:<8} {}",
                    s.id,
                    s.payload.to_string(),
                    status,
                    s.pid,
                    s.entrypoint
                );
            }
            Ok(0)
        }
        Command::Kill { signal, id } => {
            let sig = units::parse_signal(&signal)?;
            rt.load(&id)?.kill(sig, false)?;
            Ok(0)
        }
        Command::Rm { force, ids } => {
            for id in ids {
                rt.load(&id)?
                    .delete(force)
                    .with_context(|| format!("removing {id}"))?;
                image_container::remove(&cli.root, &id)?;
                println!("{id}");
            }
            Ok(0)
        }
        Command::Image { command } => image::run(&cli.root, command),
        Command::Logs { id } => {
            let log = image_container::dir(&cli.root, &id).join("log");
            let mut f = std::fs::File::open(&log)
                .with_context(|| format!("container {id} has no logs (it was not run with -d)"))?;
            std::io::copy(&mut f, &mut std::io::stdout())?;
            Ok(0)
        }
        Command::Exec { id, cmd } => {
            let container = rt.load(&id)?;
            let config = container.state().bundle.join("config.json");
            let spec: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?,
            )?;
            let mut process = spec["process"].clone();
            process["args"] = serde_json::json!(cmd);
            process["terminal"] = serde_json::json!(false);
            let process =
                serde_json::from_value(process).context("the container's process spec")?;
            // The exec'd process is a grandchild: adopt it to reap it.
            nix::sys::prctl::set_child_subreaper(true)?;
            let started = container.exec(rt.config(), &process, amphi_runtime::Stdio::default())?;
            let code = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(started.pid), None)?
            {
                nix::sys::wait::WaitStatus::Exited(_, c) => c,
                nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
                _ => 125,
            };
            Ok(code.clamp(0, 255) as u8)
        }
        Command::Export { output, id } => {
            let rootfs = image_container::dir(&cli.root, &id).join("rootfs");
            if !rootfs.is_dir() {
                anyhow::bail!("container {id} has no image rootfs to export (run from an image, not yet removed)");
            }
            let tmp = output.with_extension("amphi-partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            if let Err(e) = amphi_images::layer::tar_tree(&rootfs, std::io::BufWriter::new(file)) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, &output)
                .with_context(|| format!("writing {}", output.display()))?;
            Ok(0)
        }
        Command::Stats { id } => {
            let stats = rt.load(&id)?.stats()?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(0)
        }
    }
}
