//! Which device nodes a container may use: the spec's device cgroup rules
//! plus the nodes every container gets, in the v1 `devices.allow` /
//! `devices.deny` form.
//!
//! Without these, a process with CAP_MKNOD (in Docker's and containerd's
//! default set) could make a node for the host's disk and open it.

use std::fmt;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

/// One line for `devices.allow` (when `allow`) or `devices.deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    /// `a` (all devices), `c` or `b`.
    pub kind: char,
    /// `None` matches every major (or minor) number.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Some of `r`, `w`, `m` (mknod).
    pub access: String,
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

/// The nodes the init makes in every container's /dev (and the terminal
/// ones), allowed as runc allows them; making any node (`m`) is allowed too,
/// as runc does, since a node that cannot be opened is harmless.
const DEFAULT_ALLOWED: &[(char, Option<i64>, Option<i64>, &str)] = &[
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"), // null
    ('c', Some(1), Some(5), "rwm"), // zero
    ('c', Some(1), Some(7), "rwm"), // full
    ('c', Some(1), Some(8), "rwm"), // random
    ('c', Some(1), Some(9), "rwm"), // urandom
    ('c', Some(5), Some(0), "rwm"), // tty
    ('c', Some(5), Some(1), "rwm"), // console
    ('c', Some(5), Some(2), "rwm"), // ptmx
    ('c', Some(136), None, "rwm"),  // pts/*
];

/// The rules for a container, in the order to write them: deny every
/// device (runc's baseline, whatever the spec says), then the spec's
/// `linux.resources.devices` (an "allow all" there, as privileged
/// containers have, undoes the baseline), then the defaults, then an allow
/// for each node listed in `linux.devices`.
pub(crate) fn rules(spec: &[LinuxDeviceCgroup], listed: &[LinuxDevice]) -> Vec<DeviceRule> {
    let rule = |allow, kind, major, minor, access: &str| DeviceRule {
        allow,
        kind,
        major,
        minor,
        access: access.into(),
    };
    let mut out = vec![rule(false, 'a', None, None, "rwm")];
    out.extend(spec.iter().filter_map(|r| {
        let access = r.access().as_deref().unwrap_or("rwm");
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(t) => kind_char(t)?,
        };
        Some(rule(r.allow(), kind, r.major(), r.minor(), access))
    }));
    out.extend(
        DEFAULT_ALLOWED
            .iter()
            .map(|&(kind, major, minor, access)| rule(true, kind, major, minor, access)),
    );
    out.extend(listed.iter().filter_map(|d| {
        let kind = kind_char(d.typ())?;
        Some(rule(true, kind, Some(d.major()), Some(d.minor()), "rwm"))
    }));
    out
}

/// The rule letter of one kind of device node; `None` for FIFOs, which
/// need no device access, and for `a`, which in a rule about one node
/// would allow every device.
fn kind_char(t: LinuxDeviceType) -> Option<char> {
    match t {
        LinuxDeviceType::B => Some('b'),
        LinuxDeviceType::C | LinuxDeviceType::U => Some('c'),
        LinuxDeviceType::P | LinuxDeviceType::A => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceCgroupBuilder};

    #[test]
    fn deny_all_then_defaults_then_listed_devices() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        let lines: Vec<String> = rules(&[deny_all], &[fuse])
            .iter()
            .map(|r| format!("{} {r}", if r.allow { "allow" } else { "deny" }))
            .collect();
        assert_eq!(lines[0], "deny a *:* rwm");
        assert_eq!(lines[1], "deny a *:* rwm");
        assert!(lines.contains(&"allow c 1:3 rwm".to_string()));
        assert!(lines.contains(&"allow c 136:* rwm".to_string()));
        assert!(lines.contains(&"allow b *:* m".to_string()));
        assert_eq!(lines.last().unwrap(), "allow c 10:229 rwm");
        assert!(!lines
            .iter()
            .any(|l| l.starts_with("allow b") && l.contains("r")));
    }

    #[test]
    fn a_listed_fifo_or_all_devices_entry_allows_nothing() {
        let node = |typ| {
            LinuxDeviceBuilder::default()
                .path("/dev/x")
                .typ(typ)
                .major(0)
                .minor(0)
                .build()
                .unwrap()
        };
        let r = rules(&[], &[node(LinuxDeviceType::P), node(LinuxDeviceType::A)]);
        assert!(r[1..].iter().all(|r| r.kind != 'a'), "{r:?}");
    }

    #[test]
    fn no_rules_in_the_spec_still_denies() {
        let r = rules(&[], &[]);
        assert_eq!(r[0].to_string(), "a *:* rwm");
        assert!(!r[0].allow);
        assert!(r[1..].iter().all(|r| r.allow));
    }
}
