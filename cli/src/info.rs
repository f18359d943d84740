//! `amphi version` and `amphi info`, in the shape of Docker's: what this
//! amphi is, and what the box it runs on has (containers by state, images,
//! the storage and cgroup drivers, the kernel, CPUs and memory, the roots).

use amphi_engine::{Engine, Status};
use anyhow::Result;
use serde_json::{json, Value};

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `amphi version`.
pub fn version(format: Option<&str>) -> Result<u8> {
    let v = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": "linux",
        "Arch": arch(),
        "Runtimes": ["native", "wasm"],
        "RuntimeType": "io.containerd.amphi.v1",
    });
    if let Some(f) = format {
        println!("{}", render(f, &v)?);
        return Ok(0);
    }
    println!("Client: amphi");
    println!(" Version:       {}", v["Version"].as_str().unwrap_or(""));
    println!(" OS/Arch:       linux/{}", arch());
    println!(" Runtimes:      native (namespaces, cgroups), wasm (wasmtime: WASI p1, 0.2 components, wasi:http)");
    println!(" Shim:          containerd-shim-amphi-v1 (io.containerd.amphi.v1)");
    Ok(0)
}

/// `amphi info`.
pub fn info(engine: &Engine, format: Option<&str>) -> Result<u8> {
    let recs = engine.containers()?;
    let running = recs
        .iter()
        .filter(|r| r.state.status == Status::Running)
        .count();
    let paused = recs
        .iter()
        .filter(|r| r.state.status == Status::Running && engine.is_paused(&r.id))
        .count();
    // Images, not names: an image under two tags is one, as Docker counts.
    let images = amphi_images::Store::open(engine.root().join("images"))
        .and_then(|s| s.refs())
        .map(|r| {
            r.into_iter()
                .map(|(_, digest)| digest)
                .collect::<std::collections::HashSet<_>>()
                .len()
        })
        .unwrap_or(0);
    let v2 = amphi_runtime::cgroup::host_is_v2();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let v = json!({
        "Containers": recs.len(),
        "ContainersRunning": running - paused,
        "ContainersPaused": paused,
        "ContainersStopped": recs.len() - running,
        "Images": images,
        "Driver": "overlay2",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if v2 { "2" } else { "1" },
        "KernelVersion": kernel.trim(),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": cpus,
        "MemTotal": mem_kb * 1024,
        "AmphiRootDir": engine.root(),
        "StateDir": engine.config().state,
        "Runtimes": ["native", "wasm"],
        "ServerVersion": env!("CARGO_PKG_VERSION"),
    });
    if let Some(f) = format {
        println!("{}", render(f, &v)?);
        return Ok(0);
    }
    println!("Containers: {}", v["Containers"]);
    println!(" Running: {}", v["ContainersRunning"]);
    println!(" Paused: {}", v["ContainersPaused"]);
    println!(" Stopped: {}", v["ContainersStopped"]);
    println!("Images: {images}");
    println!("Server Version: amphi {}", env!("CARGO_PKG_VERSION"));
    println!("Storage Driver: overlay2");
    println!("Cgroup Driver: cgroupfs (systemd for --cgroup-parent NAME.slice)");
    println!("Cgroup Version: {}", if v2 { 2 } else { 1 });
    println!("Runtimes: native wasm");
    println!("Kernel Version: {}", kernel.trim());
    println!("Operating System: {os}");
    println!("OSType: linux");
    println!("Architecture: {}", std::env::consts::ARCH);
    println!("CPUs: {cpus}");
    println!(
        "Total Memory: {:.2}GiB",
        mem_kb as f64 / (1u64 << 20) as f64
    );
    println!("Amphi Root Dir: {}", engine.root().display());
    println!("State Dir: {}", engine.config().state.display());
    Ok(0)
}

fn render(format: &str, v: &Value) -> Result<String> {
    if format == "json" || format.trim() == "{{json .}}" {
        return Ok(v.to_string());
    }
    crate::format::render(format, v)
}
