//! `amphi image ...`: the store's front end.

use std::path::PathBuf;

use amphi_images::load::{load_path, load_tar, LayerReport, LoadLimits, Progress};
use amphi_images::store::familiar;
use amphi_images::{archive, pack, Store};
use anyhow::{Context, Result};
use clap::Subcommand;

use crate::images_ls::ImageLsArgs;

/// Image subcommands.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pack a WebAssembly module into a runnable OCI image (platform wasi/wasm).
    Pack {
        /// The .wasm module.
        #[arg(long)]
        wasm: PathBuf,
        /// Reference to tag the image with.
        #[arg(short = 't', long = "tag")]
        tag: String,
    },
    /// Write images to one archive (OCI layout + Docker manifest.json).
    Save {
        /// The archive to write.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// References of the images.
        #[arg(required = true)]
        refs: Vec<String>,
    },
    /// Load images from an archive (OCI layout tar or directory, docker save).
    Load {
        /// The archive, or - for stdin.
        #[arg(short = 'i', long = "input")]
        input: PathBuf,
    },
    /// List images (Docker's columns: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE).
    #[command(alias = "list")]
    Ls(ImageLsArgs),
    /// Remove unused data: with -a, every image no container uses.
    Prune {
        /// Every image without a container (amphi keeps no dangling ones).
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
    /// Remove images (refused while a container uses one, unless forced);
    /// blobs and snapshots nothing uses any more are removed too.
    Rm {
        /// Remove even when a container uses the image.
        #[arg(short, long)]
        force: bool,
        /// References.
        #[arg(required = true)]
        refs: Vec<String>,
    },
    /// Show the history of an image: the step that made each layer, newest first.
    History(crate::history::HistoryArgs),
    /// Show an image's manifest and config as JSON.
    Inspect {
        /// Reference.
        reference: String,
    },
    /// Make a one-layer image of a flat rootfs tar (as `amphi export` writes).
    Import {
        /// The tar (uncompressed or gzip).
        file: PathBuf,
        /// Reference to tag the image with.
        reference: String,
    },
}

pub fn run(engine: &amphi_engine::Engine, command: ImageCommand) -> Result<u8> {
    let root = engine.root();
    let store = Store::open(root.join("images"))
        .with_context(|| format!("opening the store at {}", root.display()))?;
    match command {
        ImageCommand::Pack { wasm, tag } => {
            let module =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let ids = pack::pack_wasm(&store, &module, &tag)
                .with_context(|| format!("packing {}", wasm.display()))?;
            println!(
                "Packed image: {}",
                familiar(&amphi_images::store::normalize(&tag)?)
            );
            println!("Image ID: {}", ids.config);
        }
        ImageCommand::Save { output, refs } => {
            // Written beside the target and renamed: a failed save leaves no file.
            let tmp = output.with_extension("amphi-partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let result = archive::save(&store, &refs, std::io::BufWriter::new(file));
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, &output)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        ImageCommand::Load { input } => {
            let limits = LoadLimits::default();
            // A byte-level bar over the archive on a terminal; nothing when
            // output goes to a file or a pipe.
            let total = std::fs::metadata(&input)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let b = match total {
                    Some(t) => indicatif::ProgressBar::new(t),
                    None => indicatif::ProgressBar::new_spinner(),
                };
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{spinner} loading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b
            } else {
                indicatif::ProgressBar::hidden()
            };
            let line_bar = bar.clone();
            let mut on_layer = |l: &LayerReport| {
                let short = &l.digest[7..19];
                if l.reused {
                    line_bar.suspend(|| println!("Layer {short} already exists"));
                } else {
                    line_bar.suspend(|| println!("Loaded layer {short} ({})", human(l.size)));
                }
            };
            let bytes_bar = bar.clone();
            let on_bytes = move |n: u64| bytes_bar.inc(n);
            let loaded = if input.as_os_str() == "-" {
                let mut progress = Progress {
                    bytes: &|_| {},
                    layer: &mut on_layer,
                };
                load_tar(
                    &store,
                    bar.wrap_read(std::io::stdin().lock()),
                    &limits,
                    &mut progress,
                )
            } else {
                let mut progress = Progress {
                    bytes: &on_bytes,
                    layer: &mut on_layer,
                };
                load_path(&store, &input, &limits, &mut progress)
            };
            bar.finish_and_clear();
            let loaded = loaded.with_context(|| format!("loading {}", input.display()))?;
            for image in loaded {
                for r in &image.refs {
                    println!("Loaded image: {}", familiar(r));
                }
                println!("Loaded image ID: {}", image.id);
            }
        }
        ImageCommand::Rm { force, refs } => {
            let users = amphi_engine::bundle::images_in_use(root);
            for r in &refs {
                amphi_images::gc::untag(&store, r, &users, force)
                    .with_context(|| format!("removing {r}"))?;
                println!("Untagged: {r}");
            }
            let (blobs, snapshots) = amphi_images::gc::collect(&store, &users)?;
            println!("Deleted: {blobs} blobs, {snapshots} layers");
        }
        ImageCommand::Inspect { reference } => {
            let v = engine.inspect_image(&reference)?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!([v]))?);
        }
        ImageCommand::Import { file, reference } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let layer = if raw.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2_reader(&raw), &mut out)
                    .with_context(|| format!("{}: corrupt gzip", file.display()))?;
                out
            } else {
                raw
            };
            // As Docker's import: files only, no Cmd or Env.
            let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}});
            let ids = pack::write_image(&store, &[layer], config, None)
                .with_context(|| format!("importing {}", file.display()))?;
            store.tag(&reference, &ids.manifest)?;
            println!("{}", ids.config);
        }
        ImageCommand::Ls(a) => return crate::images_ls::ls(&store, &a),
        ImageCommand::History(a) => return crate::history::history(engine, &a),
        ImageCommand::Prune { all, force } => {
            let what = if all {
                "all images without at least one container associated to them"
            } else {
                "all dangling images"
            };
            return crate::system::prune(engine, what, force, false, all);
        }
    }
    Ok(0)
}

/// A size as Docker prints it (1.2MB).
pub(crate) fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}kB", b as f64 / (1u64 << 10) as f64),
        b => format!("{b}B"),
    }
}

fn flate2_reader(bytes: &[u8]) -> impl std::io::Read + '_ {
    flate2::read::GzDecoder::new(bytes)
}
