//! Networks and volumes of standalone containers, with the real CNI
//! plugins and real traffic: a published busybox httpd answers on the
//! host's loopback and on its bridge's address; a port is published once
//! and released by `rm -f`; UDP publishing; names resolve on a user
//! network and nothing crosses networks; `--network none` has only
//! loopback; a simulated reboot; named, anonymous, bind, `:ro` and tmpfs
//! mounts. Only loopback and the tests' own bridges are ever a target.
//! Each test ends with no netns, veth, rule, lease or bridge left.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use amphi_testkit::net::{network_leaks, rules_naming, store_bridges};
use common::text;

use common::Bb as Net;

impl Net {
    /// Removes every container and checks nothing of them or of `needles`
    /// (their addresses) is left.
    fn assert_clean(&self, mut needles: Vec<String>) {
        let ids: Vec<String> = self
            .ok(&["ps", "-aq", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect();
        for id in &ids {
            self.ok(&["rm", "-f", id]);
        }
        needles.extend(ids);
        let found = network_leaks(&self.dirs.store, &self.dirs.state, &needles);
        assert!(found.is_empty(), "left behind:\n{}", found.join("\n"));
        assert!(common::container_dirs(&self.dirs).is_empty());
    }
}

/// GET / from `addr`, retried while the server comes up; the body.
fn http_get(addr: (Ipv4Addr, u16)) -> String {
    for _ in 0..250 {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/") {
                return out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    panic!("no HTTP answer from {addr:?}");
}

/// An image-served page: httpd serves /www with index.html "NAME".
fn httpd(n: &Net, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    let script =
        format!("mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 80 -h /www");
    args.extend_from_slice(&["bb:1", "sh", "-c", &script]);
    n.ok(&args).trim().to_string()
}

#[test]
fn published_ports_answer_on_loopback_and_the_bridge_and_are_released() {
    let n = Net::new();
    let port = amphi_testkit::free_port();
    let publish = format!("{port}:80");
    httpd(&n, "web", &["-p", &publish]);
    assert_eq!(http_get((Ipv4Addr::LOCALHOST, port)), "web\n");
    let ip = n.get("web", "{{.NetworkSettings.IPAddress}}");
    let gateway: Ipv4Addr = n
        .get("web", "{{.NetworkSettings.Gateway}}")
        .parse()
        .unwrap();
    assert_eq!(
        http_get((gateway, port)),
        "web\n",
        "through the bridge's address"
    );
    assert_eq!(
        n.get("web", "{{json .NetworkSettings.Ports}}"),
        format!(r#"{{"80/tcp":[{{"HostIp":"0.0.0.0","HostPort":"{port}"}}]}}"#)
    );
    assert!(n.ok(&["ps"]).contains(&format!("0.0.0.0:{port}->80/tcp")));

    // Published once: a second container is refused in one line, and
    // nothing of it is left.
    let before = common::container_dirs(&n.dirs).len();
    let err = n.fails(&["run", "--rm", "-p", &publish, "bb:1", "true"]);
    assert!(
        err.contains(&format!(
            "port {port}/tcp is already published by container web"
        )),
        "{err}"
    );
    assert_eq!(common::container_dirs(&n.dirs).len(), before);

    // rm -f releases the address and the port: the next one gets it.
    n.ok(&["rm", "-f", "web"]);
    assert!(
        rules_naming(std::slice::from_ref(&ip)).is_empty(),
        "rules of {ip} left"
    );
    httpd(&n, "web2", &["-p", &publish]);
    assert_eq!(http_get((Ipv4Addr::LOCALHOST, port)), "web2\n");

    // -P: the image's EXPOSE 80 (and --expose's ports) on ephemeral host ports.
    httpd(&n, "all", &["-P", "--expose", "8081"]);
    let listed = n.ok(&["port", "all"]);
    assert!(
        listed.contains("80/tcp -> ") && listed.contains("8081/tcp -> "),
        "{listed}"
    );
    let ports: serde_json::Value =
        serde_json::from_str(&n.get("all", "{{json .NetworkSettings.Ports}}")).unwrap();
    let all_port: u16 = ports["80/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(all_port, port);
    assert_eq!(http_get((Ipv4Addr::LOCALHOST, all_port)), "all\n");

    // UDP, on an ephemeral port of -p's own choosing.
    n.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        "127.0.0.1::7/udp",
        "bb:1",
        "/examples/udpecho",
        "7",
    ]);
    let ports: serde_json::Value =
        serde_json::from_str(&n.get("echo", "{{json .NetworkSettings.Ports}}")).unwrap();
    let host_port: u16 = ports["7/udp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ports["7/udp"][0]["HostIp"], "127.0.0.1");
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        sock.send_to(b"ping", (Ipv4Addr::LOCALHOST, host_port))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            answer = String::from_utf8_lossy(&buf[..len]).into_owned();
            break;
        }
    }
    assert_eq!(answer, "echo ping");
    n.assert_clean(vec![ip]);
}

#[test]
fn user_networks_resolve_names_and_keep_apart() {
    let n = Net::new();
    let a = amphi_testkit::unique_id("a").replace('-', "");
    let b = amphi_testkit::unique_id("b").replace('-', "");
    n.ok(&["network", "create", &a]);
    n.ok(&["network", "create", &b]);
    httpd(&n, "srv", &["--network", &a, "--network-alias", "www"]);
    let ip = n.get("srv", "{{.NetworkSettings.IPAddress}}");
    let fetch = |net: &str, target: &str| {
        let cmd = format!("timeout 5 wget -q -O- http://{target}/ || echo unreachable");
        text(
            &n.amphi(&["run", "--rm", "--network", net, "bb:1", "sh", "-c", &cmd])
                .stdout,
        )
    };
    assert_eq!(fetch(&a, "srv"), "srv\n", "by name");
    assert_eq!(fetch(&a, "www"), "srv\n", "by alias");
    assert_eq!(fetch(&a, &ip), "srv\n");
    assert!(fetch(&b, &ip).contains("unreachable"), "crossed networks");
    assert!(
        fetch(&b, "srv").contains("unreachable"),
        "a name of another network"
    );
    // The default bridge resolves no names, as Docker's.
    httpd(&n, "plain", &[]);
    assert!(fetch("bridge", "plain").contains("unreachable"));
    // The hosts file of a running container follows its network's members.
    httpd(&n, "late", &["--network", &a]);
    let hosts = n.ok(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(hosts.contains("late"), "{hosts}");

    // Refused while in use; then removed with its bridge and rules.
    let inspected: serde_json::Value =
        serde_json::from_str(&n.ok(&["network", "inspect", &a])).unwrap();
    let bridge_a = inspected[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    // The plugins (CNI CHECK) find the attachment as ADD left it.
    let check = &inspected[0]["Containers"][n.get("srv", "{{.Id}}")]["AmphiCheck"];
    assert_eq!(check, "ok");
    let err = n.fails(&["network", "rm", &a]);
    assert!(err.contains("active endpoints"), "{err}");
    n.ok(&["rm", "-f", "srv", "late"]);
    n.ok(&["network", "rm", &a]);
    assert!(
        !Path::new("/sys/class/net").join(&bridge_a).exists(),
        "bridge {bridge_a} left"
    );
    assert!(
        rules_naming(std::slice::from_ref(&bridge_a)).is_empty(),
        "rules of {bridge_a} left"
    );
    assert!(!store_bridges(&n.dirs.store).contains(&bridge_a));
    let pruned = n.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains(&b), "{pruned}");
    assert!(!n.ok(&["network", "ls", "-q"]).contains(&b));
    n.assert_clean(vec![ip]);
}

#[test]
fn network_connect_and_a_second_network_flag_join_more_networks() {
    let n = Net::new();
    let front = amphi_testkit::unique_id("front").replace('-', "");
    let back = amphi_testkit::unique_id("back").replace('-', "");
    n.ok(&["network", "create", &front]);
    n.ok(&["network", "create", &back]);
    httpd(&n, "web", &["--network", &front]);
    httpd(&n, "db", &["--network", &back]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "proxy",
        "--network",
        &front,
        "bb:1",
        "sleep",
        "600",
    ]);
    let fetch = |from: &str, target: &str| {
        let cmd = format!("timeout 5 wget -q -O- http://{target}/ || echo unreachable");
        n.ok(&["exec", from, "sh", "-c", &cmd])
    };
    assert!(
        fetch("proxy", "db").contains("unreachable"),
        "before connect"
    );
    // Live: an interface on the second network, the first's default route
    // kept, and names of both networks resolved.
    n.ok(&["network", "connect", &back, "proxy"]);
    assert_eq!(fetch("proxy", "web"), "web\n");
    assert_eq!(fetch("proxy", "db"), "db\n");
    let routes = n.ok(&["exec", "proxy", "ip", "route"]);
    assert_eq!(
        routes.lines().filter(|l| l.starts_with("default")).count(),
        1,
        "{routes}"
    );
    assert!(routes.contains("dev eth1"), "{routes}");
    // Still nothing crosses for the others.
    assert!(fetch("web", "db").contains("unreachable"));
    let networks: serde_json::Value =
        serde_json::from_str(&n.get("proxy", "{{json .NetworkSettings.Networks}}")).unwrap();
    let db_ip = n.get("db", "{{.NetworkSettings.IPAddress}}");
    assert!(
        networks[&back]["IPAddress"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty()),
        "{networks}"
    );
    assert!(
        networks[&front]["IPAddress"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty()),
        "{networks}"
    );
    // Kept for the next start.
    n.ok(&["restart", "-t", "0", "proxy"]);
    let mut tries = 0;
    while !fetch("proxy", "db").contains("db") {
        tries += 1;
        assert!(tries < 20, "the second network did not come back");
    }
    // One line each for what cannot be; a network in use stays.
    let err = n.fails(&["network", "connect", &back, "proxy"]);
    assert!(err.contains("already on network"), "{err}");
    let err = n.fails(&["network", "disconnect", &front, "proxy"]);
    assert!(err.contains("cannot leave"), "{err}");
    let err = n.fails(&["network", "connect", "no-such-net", "proxy"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = n.fails(&["network", "rm", &back]);
    assert!(err.contains("active endpoints"), "{err}");
    // Disconnect: its address there released, the name gone.
    let proxy_back_ip = networks[&back]["IPAddress"].as_str().unwrap().to_string();
    n.ok(&["network", "disconnect", &back, "proxy"]);
    assert!(fetch("proxy", "db").contains("unreachable"));
    let addrs = n.ok(&["exec", "proxy", "ip", "-4", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");
    // `--network` given twice at run: on both from the start.
    let both = n.ok(&[
        "run",
        "--rm",
        "--network",
        &front,
        "--network",
        &back,
        "bb:1",
        "sh",
        "-c",
        "timeout 5 wget -q -O- http://web/; timeout 5 wget -q -O- http://db/",
    ]);
    assert_eq!(both, "web\ndb\n");
    let err = n.fails(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--network",
        &back,
        "bb:1",
        "true",
    ]);
    assert!(err.contains("conflicting options"), "{err}");
    n.ok(&["rm", "-f", "proxy", "web", "db"]);
    n.ok(&["network", "rm", &front, &back]);
    n.assert_clean(vec![db_ip, proxy_back_ip]);
}

#[test]
fn network_options_none_dns_and_bad_input() {
    let n = Net::new();
    // none: loopback only, and up.
    let links = n.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb:1",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    // DNS options and extra hosts.
    let out = n.ok(&[
        "run",
        "--rm",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:3",
        "--add-host",
        "db:192.0.2.7",
        "--add-host",
        "gw:host-gateway",
        "--hostname",
        "box1",
        "bb:1",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts /etc/hostname",
    ]);
    assert!(
        out.contains("nameserver 192.0.2.53\n")
            && out.contains("search corp.example\n")
            && out.contains("options ndots:3\n"),
        "{out}"
    );
    assert!(
        out.contains("192.0.2.7\tdb\n")
            && out.lines().any(|l| l.ends_with("\tgw"))
            && out.contains("\tbox1"),
        "{out}"
    );
    assert!(out.ends_with("box1\n"), "{out}");
    // One line each, nothing made.
    let subnet_in_use = n.get_default_subnet();
    for (args, want) in [
        (
            vec!["run", "--rm", "-p", "80/sctp", "bb:1", "true"],
            "protocol",
        ),
        (
            vec!["run", "--rm", "--network", "nosuchnet", "bb:1", "true"],
            "network nosuchnet not found",
        ),
        (
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                "-p",
                "8080:80",
                "bb:1",
                "true",
            ],
            "conflicting options",
        ),
        (
            vec!["run", "--rm", "--network-alias", "x", "bb:1", "true"],
            "user-defined networks",
        ),
        (
            vec!["run", "--rm", "--dns", "not-an-ip", "bb:1", "true"],
            "--dns",
        ),
        (
            vec!["network", "create", "--subnet", "10.0.0.1/24", "hostbits"],
            "host bits",
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                subnet_in_use.as_str(),
                "clash",
            ],
            "overlaps",
        ),
        (vec!["network", "rm", "bridge"], "pre-defined"),
    ] {
        let err = n.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(n
        .ok(&["network", "ls", "-q"])
        .lines()
        .all(|l| l == "bridge"));
    n.assert_clean(vec![]);
}

impl Net {
    /// The default network's subnet (made by a first run if need be).
    fn get_default_subnet(&self) -> String {
        self.ok(&["run", "--rm", "bb:1", "true"]);
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["network", "inspect", "bridge"])).unwrap();
        v[0]["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[test]
fn after_a_reboot_the_bridge_and_restarted_containers_work_again() {
    let n = Net::new();
    let net = amphi_testkit::unique_id("n").replace('-', "");
    n.ok(&["network", "create", &net]);
    let port = amphi_testkit::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    httpd(
        &n,
        "web",
        &["--restart", "always", "--network", &net, "-p", &publish],
    );
    assert_eq!(http_get((Ipv4Addr::LOCALHOST, port)), "web\n");
    let id = n.get("web", "{{.Id}}");
    let ip = n.get("web", "{{.NetworkSettings.IPAddress}}");

    // The reboot: processes, mounts under the state root, the bridge and
    // the rules go; the store (records, leases) stays.
    for pid in amphi_testkit::processes_of(&id) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let watchers = n.watchers();
    for w in watchers {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let tmp = n.dirs.tmp.path().to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&tmp))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
    amphi_testkit::net::drop_rules_naming(&[id.clone(), ip.clone()]);
    amphi_testkit::net::drop_bridges(&n.dirs.store);
    std::fs::remove_dir_all(&n.dirs.state).unwrap();

    let back = n.ok(&["start", "--all-restartable"]);
    assert_eq!(back.trim(), id);
    assert_eq!(http_get((Ipv4Addr::LOCALHOST, port)), "web\n");
    let new_ip = n.get("web", "{{.NetworkSettings.IPAddress}}");
    n.assert_clean(vec![ip, new_ip]);
}

#[test]
fn volumes_outlive_containers_and_start_with_the_image_files() {
    let n = Net::new();
    let sh = |args: &[&str]| -> String {
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend_from_slice(args);
        n.ok(&all)
    };
    // A new named volume over an image directory starts with its files.
    let listing = sh(&["-v", "etcvol:/etc", "bb:1", "ls", "/etc"]);
    assert!(listing.contains("passwd"), "{listing}");
    // Data written through a named volume is there for the next container.
    sh(&[
        "-v",
        "data:/data",
        "bb:1",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        sh(&["-v", "data:/data", "bb:1", "cat", "/data/f"]),
        "kept\n"
    );
    // :ro refuses writes; --mount says the same.
    let ro = sh(&[
        "-v",
        "data:/data:ro",
        "bb:1",
        "sh",
        "-c",
        "echo x > /data/g 2>&1 || echo refused",
    ]);
    assert!(ro.contains("refused"), "{ro}");
    let ro = sh(&[
        "--mount",
        "type=volume,src=data,dst=/d,readonly",
        "bb:1",
        "sh",
        "-c",
        "touch /d/g 2>&1 || echo refused",
    ]);
    assert!(ro.contains("refused"), "{ro}");
    // A host directory, and a tmpfs.
    let host = n.dirs.tmp.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    let bind = format!("{}:/h", host.display());
    sh(&[
        "-v",
        &bind,
        "bb:1",
        "sh",
        "-c",
        "echo from-container > /h/out",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from-container\n"
    );
    let t = sh(&[
        "--tmpfs",
        "/scratch:size=1m",
        "bb:1",
        "sh",
        "-c",
        "grep ' /scratch ' /proc/mounts",
    ]);
    assert!(
        t.starts_with("tmpfs /scratch tmpfs") && t.contains("size=1024k"),
        "{t}"
    );

    // rm -v removes anonymous volumes only.
    n.ok(&[
        "run",
        "--name",
        "keep",
        "--network",
        "none",
        "-v",
        "data:/data",
        "-v",
        "/anon",
        "bb:1",
        "true",
    ]);
    let vols = n.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.lines().count(), 3, "{vols}");
    let err = n.fails(&["volume", "rm", "data"]);
    assert!(err.contains("in use by container keep"), "{err}");
    n.ok(&["rm", "-v", "keep"]);
    let vols = n.ok(&["volume", "ls", "-q"]);
    assert_eq!(
        vols.lines().collect::<Vec<_>>(),
        ["data", "etcvol"],
        "{vols}"
    );
    // Only volume rm (and prune -a) removes named ones; the data survived rm.
    assert_eq!(
        sh(&["-v", "data:/data", "bb:1", "cat", "/data/f"]),
        "kept\n"
    );
    n.ok(&["volume", "rm", "data"]);
    n.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(n.ok(&["volume", "ls", "-q"]), "");
    // For a Wasm container a volume is a preopen at its container path too.
    let tar = n.dirs.tmp.path().join("wasm.tar");
    amphi_examples::write_image(&tar, amphi_examples::Kind::Wasm, "w:1").unwrap();
    n.ok(&["image", "load", "-i", tar.to_str().unwrap()]);
    let pre = sh(&[
        "-v",
        "data:/data:ro",
        "--entrypoint",
        "/preopens.wasm",
        "w:1",
    ]);
    assert_eq!(pre, "/\n/data\n");
    for bad in [
        &["-v", "rel/x:/x"][..],
        &["-v", "v1:relative"],
        &["--mount", "type=nfs,target=/x"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(bad);
        args.extend_from_slice(&["bb:1", "true"]);
        n.fails(&args);
    }
    n.assert_clean(vec![]);
}

#[test]
fn a_deleted_stores_bridge_is_removed_by_the_next_network_made() {
    // A store deleted by hand, its network's bridge still up.
    let lost = amphi_testkit::TestDirs::new();
    let out = common::amphi(&lost, &["network", "create", "lost"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bridge = store_bridges(&lost.store).pop().expect("a bridge");
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    std::fs::remove_dir_all(&lost.store).unwrap();
    // Another store's next network takes it away.
    let n = Net::new();
    n.ok(&["network", "create", "next"]);
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} of a deleted store stayed"
    );
    n.ok(&["network", "rm", "next"]);
    n.assert_clean(Vec::new());
}

#[test]
fn network_container_joins_another_containers_network() {
    let n = Net::new();
    let web = amphi_testkit::unique_id("web");
    // Its own network on the default bridge; the sidecar shares it.
    httpd(&n, &web, &[]);
    let ip = n.get(&web, "{{.NetworkSettings.IPAddress}}");
    let mode = format!("container:{web}");
    let sidecar = |cmd: &str| {
        let out = n.amphi(&["run", "--rm", "--network", &mode, "bb:1", "sh", "-c", cmd]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // The server's loopback is the sidecar's, and so are its address and name.
    let page =
        sidecar("for i in $(seq 100); do wget -q -O- http://127.0.0.1/ && exit; sleep 0.1; done");
    assert_eq!(page, format!("{web}\n"));
    let seen = sidecar("ip -4 -o addr show eth0; hostname; cat /etc/resolv.conf");
    assert!(seen.contains(&ip), "{seen}");
    let web_host = n.ok(&["exec", &web, "hostname"]);
    assert!(seen.contains(web_host.trim()), "{seen}");
    let detached = n.ok(&["run", "-d", "--network", &mode, "bb:1", "sleep", "60"]);
    assert_eq!(
        n.get(detached.trim(), "{{.HostConfig.NetworkMode}}"),
        format!("container:{}", n.get(&web, "{{.Id}}"))
    );
    // What cannot go with it, or a container that does not run: one line.
    for (extra, says) in [
        (vec!["-p", "8080:80"], "conflicting"),
        (vec!["--hostname", "x"], "conflicting"),
        (vec!["--dns", "10.0.0.1"], "conflicting"),
    ] {
        let mut v = vec!["run", "--rm", "--network", &mode];
        v.extend(&extra);
        v.extend(["bb:1", "true"]);
        let err = n.fails(&v);
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    let err = n.fails(&[
        "run",
        "--rm",
        "--network",
        "container:no-such",
        "bb:1",
        "true",
    ]);
    assert!(err.contains("no-such"), "{err}");
    let stopped = amphi_testkit::unique_id("stopped");
    n.ok(&[
        "create",
        "--name",
        &stopped,
        "--network",
        "none",
        "bb:1",
        "true",
    ]);
    let err = n.fails(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{stopped}"),
        "bb:1",
        "true",
    ]);
    assert!(err.contains("not running"), "{err}");
    n.assert_clean(vec![ip]);
}
