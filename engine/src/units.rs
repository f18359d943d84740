//! Parsing of the sizes, durations, CPU counts and signals users type.

use std::time::{Duration, SystemTime};

use crate::bail;
use crate::error::{Context, Result};
use nix::sys::signal::Signal;

/// "64m", "1g", "512k", "1048576" (bytes) → bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("bad size {s:?}: use e.g. 64m, 1g, 512k"))?;
    if n.is_nan() || n <= 0.0 || n * mult as f64 > i64::MAX as f64 {
        bail!("bad size {s:?}: must be positive");
    }
    Ok((n * mult as f64) as i64)
}

/// "10s", "500ms", "2m", "1h", "3" (seconds) → duration.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("bad duration {s:?}: use e.g. 10s, 500ms, 2m"))?;
    if n.is_nan() || n <= 0.0 || !n.is_finite() {
        bail!("bad duration {s:?}: must be positive");
    }
    Ok(Duration::from_secs_f64(n * scale))
}

/// A point in time as Docker's `--since` and `--until` take one: a
/// duration before now (`10m`, `1h30m`, `90s`, `500ms`), an RFC 3339 time
/// or a date (`2024-05-01`, UTC), or Unix seconds (`1700000000[.5]`).
pub fn parse_time(s: &str) -> Result<SystemTime> {
    let t = s.trim();
    let bad = || {
        crate::Error::Invalid(format!(
        "bad time {s:?}: use a duration before now (10m, 1h30m), an RFC 3339 time or a date, or Unix seconds"
    ))
    };
    if t.contains('-') && !t.starts_with('-') {
        let full = if t.contains(['T', 't', ' ']) {
            t.to_string()
        } else {
            format!("{t}T00:00:00Z")
        };
        return crate::inspect::parse_rfc3339(&full).ok_or_else(bad);
    }
    if t.ends_with(|c: char| c.is_ascii_alphabetic()) {
        // Go's durations: number-unit pairs, h m s ms.
        let mut total = 0.0f64;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit_end = rest[digits..]
                .find(|c: char| c.is_ascii_digit())
                .map_or(rest.len(), |i| digits + i);
            let scale = match &rest[digits..unit_end] {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 0.001,
                _ => return Err(bad()),
            };
            total += n * scale;
            rest = &rest[unit_end..];
        }
        return SystemTime::now()
            .checked_sub(Duration::from_secs_f64(total))
            .ok_or_else(bad);
    }
    let secs: f64 = t.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// "0.5" CPUs → (quota, period) in microseconds.
pub fn parse_cpus(s: &str) -> Result<(i64, u64)> {
    let n: f64 = s
        .trim()
        .parse()
        .with_context(|| format!("bad --cpus {s:?}: use e.g. 0.5 or 2"))?;
    if n.is_nan() || n <= 0.0 || n > 1024.0 {
        bail!("bad --cpus {s:?}: must be between 0 and 1024");
    }
    const PERIOD: u64 = 100_000;
    Ok(((n * PERIOD as f64).round().max(1000.0) as i64, PERIOD))
}

/// "KILL", "SIGTERM", "9" → signal.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("bad signal {s:?}"));
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<Signal>()
        .with_context(|| format!("bad signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("-1m").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn cpus_and_signals() {
        assert_eq!(parse_cpus("0.5").unwrap(), (50_000, 100_000));
        assert!(parse_cpus("0").is_err());
        assert_eq!(parse_signal("kill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
    }
}
