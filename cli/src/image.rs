//! `amphi image ...`: the store's front end.

use std::path::{Path, PathBuf};

use amphi_images::load::{load_dir, load_tar, LayerReport, LoadLimits};
use amphi_images::store::familiar;
use amphi_images::{archive, pack, Store};
use anyhow::{Context, Result};
use clap::Subcommand;

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
    /// List images.
    Ls,
}

pub fn run(root: &Path, command: ImageCommand) -> Result<u8> {
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
            let mut progress = |l: &LayerReport| {
                let short = &l.digest[7..19];
                if l.reused {
                    println!("Layer {short} already exists");
                } else {
                    println!("Loaded layer {short} ({})", human(l.size));
                }
            };
            let loaded = if input.as_os_str() == "-" {
                load_tar(&store, std::io::stdin().lock(), &limits, &mut progress)
            } else if input.is_dir() {
                load_dir(&store, &input, &limits, &mut progress)
            } else {
                let f = std::fs::File::open(&input)
                    .with_context(|| format!("opening {}", input.display()))?;
                load_tar(&store, std::io::BufReader::new(f), &limits, &mut progress)
            }
            .with_context(|| format!("loading {}", input.display()))?;
            for image in loaded {
                for r in &image.refs {
                    println!("Loaded image: {}", familiar(r));
                }
                println!("Loaded image ID: {}", image.id);
            }
        }
        ImageCommand::Ls => {
            println!("{:<40} {:<14} {:>10}", "REFERENCE", "IMAGE ID", "SIZE");
            for (name, digest) in store.refs()? {
                let manifest: serde_json::Value =
                    serde_json::from_slice(&store.read_blob(&digest)?)?;
                let config = manifest["config"]["digest"].as_str().unwrap_or("");
                let size: u64 = manifest["layers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l["size"].as_u64())
                    .sum();
                let short = config.strip_prefix("sha256:").unwrap_or(config);
                println!(
                    "{:<40} {:<14} {:>10}",
                    familiar(&name),
                    &short[..short.len().min(12)],
                    human(size)
                );
            }
        }
    }
    Ok(0)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}kB", b as f64 / (1u64 << 10) as f64),
        b => format!("{b}B"),
    }
}
