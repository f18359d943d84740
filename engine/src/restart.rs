//! Restart policies with Docker's semantics: `no`, `on-failure[:MAX]`,
//! `always`, `unless-stopped`; a delay doubling from 100 ms between
//! restarts, back to 100 ms after a run of 10 s or more; a stop by the user
//! suppresses restarts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bail;
use crate::error::Result;

/// A restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Policy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        /// The most restarts; 0 for no limit.
        max: u32,
    },
    /// Restart after every exit.
    Always,
    /// As `Always`; also stays down across reboots once stopped.
    UnlessStopped,
}

/// The first delay between restarts.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// A run at least this long resets the delay.
pub const RESET_AFTER: Duration = Duration::from_secs(10);
/// The longest delay (Docker's: one minute).
pub const MAX_DELAY: Duration = Duration::from_secs(60);

impl Policy {
    /// Parses `--restart`.
    pub fn parse(s: &str) -> Result<Policy> {
        Ok(match s.split_once(':') {
            None if s == "no" || s.is_empty() => Policy::No,
            None if s == "always" => Policy::Always,
            None if s == "unless-stopped" => Policy::UnlessStopped,
            None if s == "on-failure" => Policy::OnFailure { max: 0 },
            Some(("on-failure", n)) => match n.parse::<u32>() {
                Ok(max) => Policy::OnFailure { max },
                Err(_) => bail!("bad --restart {s:?}: the most restarts must be a number"),
            },
            Some((p @ ("no" | "always" | "unless-stopped"), _)) => {
                bail!("bad --restart {s:?}: only on-failure takes a count, not {p}")
            }
            _ => bail!("bad --restart {s:?}: use no, on-failure[:MAX], always or unless-stopped"),
        })
    }

    /// Whether a container that exited with `code` after `restarts`
    /// restarts is started again (the user did not stop it).
    pub fn should_restart(&self, code: i32, restarts: u32) -> bool {
        match *self {
            Policy::No => false,
            Policy::OnFailure { max } => code != 0 && (max == 0 || restarts < max),
            Policy::Always | Policy::UnlessStopped => true,
        }
    }

    /// Whether the boot command brings it back (when the user had not
    /// stopped it): `always` and `unless-stopped`, and `on-failure` for a
    /// container that was running when the box went down (a power cut is
    /// a failure of the run).
    pub fn restart_at_boot(&self, was_running: bool) -> bool {
        match self {
            Policy::No => false,
            Policy::OnFailure { .. } => was_running,
            Policy::Always | Policy::UnlessStopped => true,
        }
    }
}

/// The delay before the next restart: doubled from the last one, or
/// back to the first after a long enough run.
pub fn next_delay(last: Option<Duration>, ran_for: Duration) -> Duration {
    match last {
        _ if ran_for >= RESET_AFTER => FIRST_DELAY,
        None => FIRST_DELAY,
        Some(d) => (d * 2).min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_decide() {
        assert_eq!(Policy::parse("no").unwrap(), Policy::No);
        assert_eq!(
            Policy::parse("on-failure:3").unwrap(),
            Policy::OnFailure { max: 3 }
        );
        assert!(Policy::parse("always:2").is_err());
        assert!(Policy::parse("sometimes").is_err());
        assert!(Policy::parse("on-failure:x").is_err());
        let p = Policy::OnFailure { max: 3 };
        assert!(p.should_restart(1, 2));
        assert!(!p.should_restart(1, 3));
        assert!(!p.should_restart(0, 0));
        assert!(Policy::Always.should_restart(0, 100));
        assert!(!Policy::No.should_restart(1, 0));
    }

    #[test]
    fn delays_double_and_reset() {
        let d1 = next_delay(None, Duration::ZERO);
        let d2 = next_delay(Some(d1), Duration::ZERO);
        assert_eq!((d1, d2), (FIRST_DELAY, FIRST_DELAY * 2));
        assert_eq!(next_delay(Some(d2), RESET_AFTER), FIRST_DELAY);
        assert_eq!(next_delay(Some(MAX_DELAY), Duration::ZERO), MAX_DELAY);
    }
}
