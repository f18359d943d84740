//! `amphi`: the standalone front end, a thin layer over the engine
//! (containers) and the image store, with Docker's command line.

mod containers;
mod exec;
mod format;
mod history;
mod image;
mod images_ls;
mod info;
mod network;
mod ps;
mod registry;
mod run;
mod stats;
mod system;
mod tty;

use std::path::PathBuf;
use std::process::ExitCode;

use amphi_engine::{Engine, EngineConfig, RunOptions};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

/// Exit status for errors of amphi itself (Docker's `run` uses the same).
const EXIT_AMPHI_ERROR: u8 = 125;

#[derive(Parser)]
#[command(
    name = "amphi",
    version,
    about = "Run native and WebAssembly containers side by side"
)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// The options every subcommand takes.
#[derive(Args)]
struct Globals {
    /// Store root (images, containers, compiled Wasm modules).
    #[arg(
        long,
        env = "AMPHI_ROOT",
        default_value = "/var/lib/amphi",
        global = true
    )]
    root: PathBuf,
    /// Runtime state root (what a reboot may lose).
    #[arg(long, env = "AMPHI_STATE", default_value = "/run/amphi", global = true)]
    state: PathBuf,
    /// A registry (HOST[:PORT]) that may be reached over plain HTTP.
    #[arg(long = "insecure-registry", global = true)]
    insecure_registries: Vec<String>,
}

/// Docker's top-level shorthands of image commands (`docker images`,
/// `rmi`, `load`, `save`, `import`, `history`) as amphi's `image`
/// subcommands, its `image pull|push|tag` and `system info` as amphi's
/// top-level verbs, and
/// its `container VERB` forms as amphi's verbs (`container ls` is `ps`),
/// so a Docker user's habit works; the global options may come first.
fn docker_shorthands(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "--root" | "--state" | "--insecure-registry" => i += 2,
            _ if a.starts_with("--root=")
                || a.starts_with("--state=")
                || a.starts_with("--insecure-registry=") =>
            {
                i += 1
            }
            _ => break,
        }
    }
    if args.get(i).is_some_and(|a| a == "container") {
        let verb = match args.get(i + 1).and_then(|a| a.to_str()) {
            Some("ls" | "list" | "ps") => "ps",
            Some("prune") => "container-prune",
            Some(
                v @ ("run" | "create" | "start" | "stop" | "restart" | "kill" | "rm" | "wait"
                | "inspect" | "top" | "cp" | "commit" | "logs" | "attach" | "exec" | "export"
                | "stats" | "pause" | "unpause" | "rename" | "port" | "diff" | "update"),
            ) => v,
            _ => return args,
        };
        let verb = std::ffi::OsString::from(verb);
        args.splice(i..=i + 1, [verb]);
        return args;
    }
    // `image pull|push|tag` and `system info` are amphi's top-level verbs.
    let second = args.get(i + 1).and_then(|a| a.to_str());
    match (args.get(i).and_then(|a| a.to_str()), second) {
        (Some("image"), Some("pull" | "push" | "tag")) | (Some("system"), Some("info")) => {
            args.remove(i);
            return args;
        }
        _ => {}
    }
    let sub = match args.get(i).and_then(|a| a.to_str()) {
        Some("images") => "ls",
        Some("rmi") => "rm",
        Some(s @ ("load" | "save" | "import" | "history")) => s,
        _ => return args,
    };
    let sub = std::ffi::OsString::from(sub);
    args.splice(i..=i, [std::ffi::OsString::from("image"), sub]);
    args
}

/// Parses the command line. `amphi run ...` is tried first with a command
/// of `run` alone: building every subcommand's options costs ~0.3 ms, a
/// few percent of a Wasm container's whole run. Whatever that refuses,
/// help and version included, is parsed again by the whole command, which
/// answers as it always does; what it accepts parses to the same options,
/// from the same definitions.
fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let args = docker_shorthands(std::env::args_os().collect());
    if args.get(1).is_some_and(|a| a == "run") {
        let run = Globals::augment_args(clap::Command::new("amphi"))
            .subcommand(RunOptions::augment_args(clap::Command::new("run")));
        if let Some(cli) = run
            .try_get_matches_from(&args)
            .ok()
            .and_then(|m| Cli::from_arg_matches(&m).ok())
        {
            return Ok(cli);
        }
    }
    Cli::try_parse_from(args)
}

#[derive(Subcommand)]
enum Command {
    /// Run a container (in the foreground unless -d).
    Run(Box<RunOptions>),
    /// Create a container without starting it.
    Create(Box<RunOptions>),
    /// Start stopped containers (detached unless -a).
    Start {
        /// Attach: run in the foreground, with its output here.
        #[arg(short, long)]
        attach: bool,
        /// Attach stdin too.
        #[arg(short, long)]
        interactive: bool,
        /// Start every container whose restart policy brings it back
        /// after a reboot (the boot command).
        #[arg(long, conflicts_with_all = ["attach", "interactive"])]
        all_restartable: bool,
        /// Containers (id, name or unique id prefix).
        #[arg(required_unless_present = "all_restartable")]
        ids: Vec<String>,
    },
    /// Stop running containers: the stop signal, then SIGKILL.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's, 10).
        #[arg(short = 't', long = "time", allow_hyphen_values = true)]
        time: Option<i64>,
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop, then start containers.
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", allow_hyphen_values = true)]
        time: Option<i64>,
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Its anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Freeze every process of running containers.
    Pause {
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the changes to a container's filesystem (A added, C changed, D deleted).
    Diff {
        /// The container.
        id: String,
    },
    /// Change containers' resources or restart policy (live, and for every later start).
    Update {
        #[command(flatten)]
        opts: amphi_engine::update::UpdateOptions,
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Rename a container.
    Rename {
        /// The container.
        id: String,
        /// Its new name.
        name: String,
    },
    /// List a container's published ports (or where one of its ports is).
    Port {
        /// The container.
        id: String,
        /// PORT[/PROTO]: only this one.
        port: Option<String>,
    },
    /// Block until containers stop; print their exit codes.
    Wait {
        /// Containers.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List containers.
    Ps(ps::PsArgs),
    /// Show containers or images as JSON (Docker's shape).
    Inspect {
        /// Go-template-like format, e.g. '{{.State.Status}}'.
        #[arg(short, long)]
        format: Option<String>,
        /// container or image (default: a container, else an image).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Containers or images.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show a container's processes (the host's `ps`, default -ef).
    Top {
        /// Container.
        id: String,
        /// Options for ps.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Copy files between a container and the host: CONTAINER:SRC DST or SRC CONTAINER:DST.
    Cp {
        /// Source.
        src: String,
        /// Destination.
        dst: String,
    },
    /// Make an image of a container's changes.
    Commit {
        /// Commit message.
        #[arg(short, long)]
        message: Option<String>,
        /// Author.
        #[arg(short, long)]
        author: Option<String>,
        /// Container.
        id: String,
        /// Reference to tag the image with.
        reference: Option<String>,
    },
    /// Print a detached container's output.
    Logs {
        /// Follow: keep printing until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (or all).
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Each line with the time it was written in front (RFC 3339, nanoseconds).
        #[arg(short, long)]
        timestamps: bool,
        /// Only lines written since: a duration before now (10m, 1h30m), an RFC 3339 time or date, or Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Only lines written before: the same forms as --since.
        #[arg(long)]
        until: Option<String>,
        /// Extra attributes (amphi's log has none: the same as without).
        #[arg(long)]
        details: bool,
        /// Container.
        id: String,
    },
    /// Follow a detached container's output until it exits, passing
    /// signals on; exits with its status.
    Attach {
        /// Container.
        id: String,
    },
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Write a container's filesystem as a flat tar.
    Export {
        /// The tar to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Container.
        id: String,
    },
    /// Show containers' CPU, memory, network and block I/O, as docker stats.
    Stats(stats::StatsArgs),
    /// Pull an image from a registry.
    Pull {
        /// OS/ARCH[/VARIANT] to pick from a multi-platform image.
        #[arg(long)]
        platform: Option<String>,
        /// Print only the image's name when done.
        #[arg(short, long)]
        quiet: bool,
        /// The image (Docker's reference rules: busybox = docker.io/library/busybox:latest).
        reference: String,
    },
    /// Push an image to a registry.
    Push {
        /// The image in the store.
        reference: String,
        /// Where to push it (default: its own name).
        dest: Option<String>,
    },
    /// Log in to a registry (credentials kept in Docker's config.json).
    Login {
        /// User name.
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// The registry (HOST[:PORT]).
        server: String,
    },
    /// Forget a registry's credentials.
    Logout {
        /// The registry.
        server: String,
    },
    /// Give an image another name.
    Tag {
        /// The image.
        source: String,
        /// The new name.
        target: String,
    },
    /// Manage images in the store.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Manage networks.
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        command: network::VolumeCommand,
    },
    /// Show amphi's version.
    Version {
        /// Go-template-like format, or json.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Show what this box runs: containers, images, drivers, kernel, roots.
    Info {
        /// Go-template-like format ('{{.Containers}}'), or json.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Disk usage and clean-up.
    System {
        #[command(subcommand)]
        command: system::SystemCommand,
    },
    /// Remove stopped containers (`container prune`, as Docker's).
    #[command(name = "container-prune", hide = true)]
    ContainerPrune {
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// A detached container's watcher (started by amphi itself).
    #[command(name = "container-watch", hide = true)]
    ContainerWatch {
        /// Container id.
        id: String,
        /// Delay before a restart in ms; negative for a user's start.
        #[arg(allow_hyphen_values = true)]
        delay_ms: i64,
    },
}

fn main() -> ExitCode {
    // A container init is this binary re-executed: it must branch off
    // before anything else happens.
    amphi_runtime::init::run_if_init(Some(&amphi_runtime::wasm::WASMTIME));
    // `amphi ps | head` ends quietly, as other CLIs do (Rust ignores SIGPIPE).
    // SAFETY: setting a default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("AMPHI_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("amphi: {}", one_line(&e));
            ExitCode::from(EXIT_AMPHI_ERROR)
        }
    }
}

/// An error and its causes as one line. A cause whose text a message
/// already carries (an error that prints its source and also reports it
/// as its cause) is said once.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
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

fn dispatch(cli: Cli) -> Result<u8> {
    if let Command::Version { format } = &cli.command {
        return info::version(format.as_deref());
    }
    let engine = Engine::with_config(EngineConfig {
        root: cli.globals.root.clone(),
        state: cli.globals.state.clone(),
        watcher_exe: PathBuf::from("/proc/self/exe"),
    });
    let store = || {
        amphi_images::Store::open(cli.globals.root.join("images"))
            .with_context(|| format!("opening the store at {}", cli.globals.root.display()))
    };
    let reg = || registry::options(&cli.globals.root, &cli.globals.insecure_registries);
    match cli.command {
        Command::Run(opts) => {
            pull_for(&opts, &store, &reg)?;
            run::run(&engine, *opts)
        }
        Command::Pull {
            platform,
            quiet,
            reference,
        } => registry::pull(&store()?, reg()?, &reference, platform, quiet).map(|()| 0),
        Command::Push { reference, dest } => {
            registry::push(&store()?, reg()?, &reference, dest.as_deref()).map(|()| 0)
        }
        Command::Login {
            username,
            password,
            password_stdin,
            server,
        } => registry::login(reg()?, &server, username, password, password_stdin).map(|()| 0),
        Command::Logout { server } => registry::logout(reg()?, &server).map(|()| 0),
        Command::Tag { source, target } => registry::tag(&store()?, &source, &target).map(|()| 0),
        Command::Create(opts) => {
            pull_for(&opts, &store, &reg)?;
            let rec = engine.create(&opts)?;
            println!("{}", rec.id);
            Ok(0)
        }
        Command::ContainerPrune { force } => {
            system::prune(&engine, "all stopped containers", force, true, false)
        }
        Command::ContainerWatch { id, delay_ms } => {
            Ok(engine.watch(&id, delay_ms).clamp(0, 255) as u8)
        }
        Command::Image { command } => image::run(&engine, command),
        Command::System { command } => system::run(&engine, command),
        Command::Info { format } => info::info(&engine, format.as_deref()),
        Command::Network { command } => network::network(&engine, command),
        Command::Volume { command } => network::volume(&engine, command),
        other => containers::run(&engine, other),
    }
}

/// Docker's habit for `run` and `create`: the image is pulled first when
/// the store lacks it (`--pull missing`, the default), every time
/// (`always`), or never; `--platform` picks it from an index.
fn pull_for(
    opts: &RunOptions,
    store: &dyn Fn() -> Result<amphi_images::Store>,
    reg: &dyn Fn() -> Result<amphi_images::registry::RegistryOptions>,
) -> Result<()> {
    let (None, Some(image)) = (&opts.bundle, opts.rest.first()) else {
        return Ok(());
    };
    let store = store()?;
    let missing = registry::missing(&store, image);
    let pull = match opts.pull.as_deref() {
        Some("never") => false,
        Some("always") => !registry::is_archive(image),
        _ => missing,
    };
    if pull {
        registry::pull_for_run(&store, reg()?, image, opts.platform.clone(), missing)?;
    }
    Ok(())
}
