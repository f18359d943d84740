//! Health checks, as Docker's HEALTHCHECK: a command run in the container
//! every interval (an exec, with its timeout), `healthy` after a success,
//! `unhealthy` after `retries` failures in a row (failures within the
//! start period do not count), the last five results kept. The image's
//! `Healthcheck` is the default; `--health-*` flags replace its fields and
//! `--no-healthcheck` turns it off. The watcher of a run (the foreground
//! `amphi run` or the detached watcher) checks from a thread of its own;
//! the state is `<root>/containers/<id>/health.json`, which `ps` and
//! `inspect` read.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bail;
use crate::error::Result;
use crate::exec::ExecOptions;
use crate::options::RunOptions;
use crate::record;
use crate::{units, Engine};

const FILE: &str = "health.json";
/// Docker's defaults.
const INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(30);
const RETRIES: u32 = 3;
/// How much of a check's output is kept.
const OUTPUT_MAX: usize = 4096;

/// A container's health check, settled at create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// The command, as exec runs it.
    pub test: Vec<String>,
    /// Between the end of one check and the start of the next.
    pub interval: Duration,
    /// A check running longer fails (and is killed).
    pub timeout: Duration,
    /// Failures this soon after the start do not count.
    pub start_period: Duration,
    /// Failures in a row that make it unhealthy.
    pub retries: u32,
}

/// One check's result, as Docker's `State.Health.Log` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code (-1: it could not run, or timed out).
    pub exit_code: i32,
    /// The start of its output.
    pub output: String,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last five results, oldest first.
    pub log: Vec<Probe>,
}

/// The check of a new container: the image's `Healthcheck` (`config` is
/// the image config; Null for a bundle) with the run's flags over it.
pub fn config(image_config: &Value, o: &RunOptions) -> Result<Option<HealthConfig>> {
    let given = [
        &o.health_interval,
        &o.health_timeout,
        &o.health_start_period,
    ]
    .iter()
    .any(|v| v.is_some())
        || o.health_retries.is_some();
    if o.no_healthcheck {
        if o.health_cmd.is_some() || given {
            bail!("conflicting options: --no-healthcheck and --health-*");
        }
        return Ok(None);
    }
    let image = &image_config["config"]["Healthcheck"];
    let strings: Vec<String> = image["Test"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let test = match &o.health_cmd {
        Some(cmd) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
        None => match strings.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            // NONE, nothing, or what Docker would not run either.
            _ => {
                if given {
                    bail!("--health-* given, but there is no health check (use --health-cmd)");
                }
                return Ok(None);
            }
        },
    };
    let image_ns = |k: &str| {
        image[k]
            .as_u64()
            .filter(|n| *n > 0)
            .map(Duration::from_nanos)
    };
    let flag = |v: &Option<String>, name: &str| -> Result<Option<Duration>> {
        v.as_deref()
            .map(|s| {
                units::parse_duration(s)
                    .map_err(|e| crate::Error::Invalid(format!("bad --health-{name}: {e}")))
            })
            .transpose()
    };
    let retries = match o.health_retries {
        Some(0) => bail!("bad --health-retries 0: must be at least 1"),
        Some(n) => n,
        None => image["Retries"]
            .as_u64()
            .filter(|n| *n > 0)
            .map_or(RETRIES, |n| n as u32),
    };
    Ok(Some(HealthConfig {
        test,
        interval: flag(&o.health_interval, "interval")?
            .or_else(|| image_ns("Interval"))
            .unwrap_or(INTERVAL),
        timeout: flag(&o.health_timeout, "timeout")?
            .or_else(|| image_ns("Timeout"))
            .unwrap_or(TIMEOUT),
        start_period: flag(&o.health_start_period, "start-period")?
            .or_else(|| image_ns("StartPeriod"))
            .unwrap_or_default(),
        retries,
    }))
}

fn file(root: &Path, id: &str) -> PathBuf {
    record::dir(root, id).join(FILE)
}

/// The health of `id`, if it has a check and has run.
pub fn load(root: &Path, id: &str) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(file(root, id)).ok()?).ok()
}

fn save(root: &Path, id: &str, h: &Health) {
    let p = file(root, id);
    let tmp = p.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(h).expect("json");
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, &p);
    }
}

/// The checks of one run; they stop when this is dropped.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Engine {
    /// Starts checking `id` (just started) with `cfg`, from a thread.
    pub(crate) fn start_health(&self, id: &str, cfg: HealthConfig) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = self.clone();
        let id = id.to_string();
        let flag = stop.clone();
        save(
            engine.root(),
            &id,
            &Health {
                status: "starting".into(),
                ..Health::default()
            },
        );
        // The checks are execs: their processes are ours to reap.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let thread = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || engine.check_loop(&id, &cfg, &flag))
            .ok();
        Monitor { stop, thread }
    }

    fn check_loop(&self, id: &str, cfg: &HealthConfig, stop: &AtomicBool) {
        let started = Instant::now();
        let mut health = load(self.root(), id).unwrap_or_default();
        loop {
            let until = Instant::now() + cfg.interval;
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20).min(cfg.interval));
            }
            let probe = self.probe(id, cfg, stop);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if probe.exit_code == 0 {
                health.status = "healthy".into();
                health.failing_streak = 0;
            } else if started.elapsed() >= cfg.start_period || health.status != "starting" {
                health.failing_streak += 1;
                if health.failing_streak >= cfg.retries {
                    health.status = "unhealthy".into();
                }
            }
            health.log.push(probe);
            if health.log.len() > 5 {
                health.log.remove(0);
            }
            save(self.root(), id, &health);
        }
    }

    /// Runs the check once.
    fn probe(&self, id: &str, cfg: &HealthConfig, stop: &AtomicBool) -> Probe {
        let start = SystemTime::now();
        let (exit_code, output) = match self.run_check(id, cfg, stop) {
            Ok(r) => r,
            Err(e) => (-1, e.to_string()),
        };
        Probe {
            start: crate::inspect::rfc3339(Some(start)),
            end: crate::inspect::rfc3339(Some(SystemTime::now())),
            exit_code,
            output,
        }
    }

    fn run_check(&self, id: &str, cfg: &HealthConfig, stop: &AtomicBool) -> Result<(i32, String)> {
        let (container, process) = self.exec_process(
            id,
            &ExecOptions {
                cmd: cfg.test.clone(),
                ..ExecOptions::default()
            },
        )?;
        let (reader, writer) = std::io::pipe().map_err(|e| crate::Error::io("pipe", e))?;
        let null =
            std::fs::File::open("/dev/null").map_err(|e| crate::Error::io("/dev/null", e))?;
        let writer: std::os::fd::OwnedFd = writer.into();
        let stdio = amphi_runtime::Stdio {
            stdin: Some(null.into()),
            stdout: Some(
                writer
                    .try_clone()
                    .map_err(|e| crate::Error::io("pipe", e))?,
            ),
            stderr: Some(writer),
        };
        let started = container.exec(self.runtime().config(), &process, stdio)?;
        // Read what it prints (all of it, so it never blocks on a full
        // pipe), keeping the start.
        let out = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            let mut r = reader;
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = OUTPUT_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let pid = Pid::from_raw(started.pid);
        let deadline = Instant::now() + cfg.timeout;
        let code = loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => break c,
                Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                Ok(_) => {}
                Err(e) => return Err(crate::Error::Invalid(format!("waiting for the check: {e}"))),
            }
            if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                let _ = out.join();
                return Ok((
                    -1,
                    format!("Health check exceeded timeout ({:?})", cfg.timeout),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok((code, out.join().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_images_check_with_the_flags_over_it() {
        let image = json!({"config": {"Healthcheck": {
            "Test": ["CMD-SHELL", "wget -q -O- http://localhost/"],
            "Interval": 5_000_000_000u64, "Retries": 5
        }}});
        let c = config(&image, &RunOptions::default()).unwrap().unwrap();
        assert_eq!(c.test, ["/bin/sh", "-c", "wget -q -O- http://localhost/"]);
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (Duration::from_secs(5), TIMEOUT, 5)
        );
        let o = RunOptions {
            health_interval: Some("200ms".into()),
            health_retries: Some(2),
            ..Default::default()
        };
        let c = config(&image, &o).unwrap().unwrap();
        assert_eq!((c.interval, c.retries), (Duration::from_millis(200), 2));
        let exec_form = json!({"config": {"Healthcheck": {"Test": ["CMD", "/bin/check", "-q"]}}});
        let c = config(&exec_form, &RunOptions::default()).unwrap().unwrap();
        assert_eq!(c.test, ["/bin/check", "-q"]);
        let none = json!({"config": {"Healthcheck": {"Test": ["NONE"]}}});
        assert!(config(&none, &RunOptions::default()).unwrap().is_none());
        let off = RunOptions {
            no_healthcheck: true,
            ..Default::default()
        };
        assert!(config(&image, &off).unwrap().is_none());
        let bad = RunOptions {
            health_retries: Some(0),
            ..Default::default()
        };
        assert!(config(&image, &bad).is_err());
        let orphan = RunOptions {
            health_interval: Some("1s".into()),
            ..Default::default()
        };
        assert!(config(&Value::Null, &orphan).is_err());
    }
}
