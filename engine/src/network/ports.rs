//! Published ports: `-p [IP:][HOST[-HOST]:]CTR[-CTR][/tcp|udp]` and `-P`
//! (every ExposedPorts entry of the image on an ephemeral host port), as
//! Docker parses them, handed to the `portmap` plugin as its
//! `portMappings`. A host port is published once: by one container of the
//! store, and only if nothing else on the host is bound to it.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One published port, in portmap's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The host's port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host address it listens on; empty for all of them.
    #[serde(rename = "hostIP", default)]
    pub host_ip: String,
}

impl PortMapping {
    /// Docker's `ps` form: `0.0.0.0:8080->80/tcp`.
    pub fn display(&self) -> String {
        let ip = if self.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &self.host_ip
        };
        format!(
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }

    fn clashes(&self, other: &PortMapping) -> bool {
        self.host_port == other.host_port
            && self.protocol == other.protocol
            && (self.host_ip.is_empty()
                || other.host_ip.is_empty()
                || self.host_ip == other.host_ip)
    }
}

fn range(s: &str, what: &str, spec: &str) -> Result<(u16, u16)> {
    let bad = || Error::Invalid(format!("bad -p {spec:?}: invalid {what} port {s:?}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 && what == "container" || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// A port request before its host port is chosen (0: ephemeral).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    host_ip: String,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    protocol: String,
}

impl Request {
    /// (container port, host port if fixed) for each port of the range.
    pub fn pairs(&self) -> Vec<(u16, Option<u16>)> {
        (self.container.0..=self.container.1)
            .enumerate()
            .map(|(i, c)| {
                let h = self
                    .host
                    .map(|(a, b)| if a == b { a } else { a + i as u16 });
                (c, h)
            })
            .collect()
    }

    /// `tcp` or `udp`.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The host address; empty for all.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }
}

/// Parses one `-p` value.
pub fn parse(spec: &str) -> Result<Request> {
    let (addr, protocol) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(Error::Invalid(format!(
            "bad -p {spec:?}: protocol must be tcp or udp"
        )));
    }
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", "", *c),
        [c, h] => ("", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => unreachable!("rsplitn(3)"),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if !ip.is_empty() && ip.parse::<Ipv4Addr>().is_err() {
        return Err(Error::Invalid(format!(
            "bad -p {spec:?}: {ip:?} is not an IPv4 address"
        )));
    }
    let container = range(ctr, "container", spec)?;
    let host = if host.is_empty() {
        None
    } else {
        Some(range(host, "host", spec)?)
    };
    if let Some((a, b)) = host {
        if b - a != container.1 - container.0 && a != b {
            return Err(Error::Invalid(format!(
                "bad -p {spec:?}: the host and container ranges differ in size"
            )));
        }
    }
    Ok(Request {
        host_ip: if ip == "0.0.0.0" {
            String::new()
        } else {
            ip.to_string()
        },
        host,
        container,
        protocol,
    })
}

/// Chooses host ports (ephemeral ones from the kernel) and checks each is
/// free: not published by `published` (the store's other containers) and
/// not bound by anything on the host. One line names a clash.
pub fn resolve(
    requests: &[Request],
    published: &[(String, PortMapping)],
) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for r in requests {
        let count = r.container.1 - r.container.0;
        for i in 0..=count {
            let container_port = r.container.0 + i;
            let host_port = match r.host {
                Some((a, b)) if a == b => a,
                Some((a, _)) => a + i,
                None => ephemeral(&r.host_ip, &r.protocol)?,
            };
            let m = PortMapping {
                host_port,
                container_port,
                protocol: r.protocol.clone(),
                host_ip: r.host_ip.clone(),
            };
            if let Some((who, _)) = published.iter().find(|(_, p)| p.clashes(&m)) {
                return Err(Error::Invalid(format!(
                    "port {}/{} is already published by container {who}",
                    m.host_port, m.protocol
                )));
            }
            if out.iter().any(|p| p.clashes(&m)) {
                return Err(Error::Invalid(format!(
                    "port {}/{} is published twice",
                    m.host_port, m.protocol
                )));
            }
            if r.host.is_some() {
                bindable(&m)?;
            }
            out.push(m);
        }
    }
    Ok(out)
}

fn bind_addr(m_ip: &str, port: u16) -> (Ipv4Addr, u16) {
    (m_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED), port)
}

/// Whether something on the host holds the port already.
fn bindable(m: &PortMapping) -> Result<()> {
    let addr = bind_addr(&m.host_ip, m.host_port);
    let held = match m.protocol.as_str() {
        "udp" => UdpSocket::bind(addr).err(),
        _ => TcpListener::bind(addr).err(),
    };
    match held {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::Invalid(format!(
            "host port {}/{} is in use on this host",
            m.host_port, m.protocol
        ))),
        Some(e) => Err(Error::io(format!("binding {}:{}", addr.0, addr.1), e)),
        None => Ok(()),
    }
}

/// A free port the kernel picks from its ephemeral range.
fn ephemeral(ip: &str, protocol: &str) -> Result<u16> {
    let addr = bind_addr(ip, 0);
    let port = match protocol {
        "udp" => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
        _ => TcpListener::bind(addr).and_then(|s| s.local_addr()),
    }
    .map_err(|e| Error::io("choosing an ephemeral port", e))?
    .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let r = parse("8080:80").unwrap();
        assert_eq!(
            (r.host, r.container, r.protocol.as_str()),
            (Some((8080, 8080)), (80, 80), "tcp")
        );
        let r = parse("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(
            (r.host_ip.as_str(), r.protocol.as_str()),
            ("127.0.0.1", "udp")
        );
        let r = parse("80").unwrap();
        assert_eq!(r.host, None);
        let r = parse("127.0.0.1::80").unwrap();
        assert_eq!((r.host_ip.as_str(), r.host), ("127.0.0.1", None));
        assert_eq!(
            parse("9000-9002:7000-7002").unwrap().container,
            (7000, 7002)
        );
        for bad in [
            "x",
            "80/sctp",
            "1.2.3:80:80",
            "9000-9002:7000-7001",
            "70000:80",
            "8080:0",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_port_is_published_once() {
        let one = resolve(&[parse("127.0.0.1:18080:80").unwrap()], &[]).unwrap();
        let theirs = vec![("web".to_string(), one[0].clone())];
        let e = resolve(&[parse("18080:81").unwrap()], &theirs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already published by container web"), "{e}");
        assert!(resolve(&[parse("18080:81/udp").unwrap()], &theirs).is_ok());
        let r = resolve(&[parse("9000-9001:7000-7001").unwrap()], &[]).unwrap();
        assert_eq!((r[1].host_port, r[1].container_port), (9001, 7001));
    }
}
