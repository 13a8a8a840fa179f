//! Every check against documents recorded from a real engine (dockerd 20.10, by
//! `scripts/record-security-fixtures`): containers made to trip the checks, one that trips none,
//! the engine's /info and networks, alone and as a Swarm manager.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use capstan_model::{CheckStatus, ObjectKind, SecurityReport, Severity};
use capstan_security::daemon::FileFacts;
use capstan_security::{CHECKS, DaemonSetup, Snapshot, assess, docs, read};

const ENGINE: &str = "unix:///var/tmp/capstan-rec/docker.sock";

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("tests/fixtures")
    .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn recorded() -> Snapshot {
    let dir = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("tests/fixtures");
    let mut containers = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container-"))
        .collect();
    names.sort();
    for n in names {
        containers.push(read::<docs::Container>("container", fixture(&n)).unwrap());
    }
    let image: docs::Image = read("image", fixture("image.json")).unwrap();
    let args = std::fs::read_to_string(dir.join("dockerd-args.txt")).unwrap();
    Snapshot {
        engine: ENGINE.into(),
        info: read("/info", fixture("info.json")).unwrap(),
        image_list: vec![docs::ImageEntry {
            id: image.id.clone(),
            tagged: true,
            size: 2_000_000,
        }],
        images: vec![image],
        containers,
        networks: read("networks", fixture("networks.json")).unwrap(),
        daemon: Some(DaemonSetup {
            args: args.lines().skip(1).map(str::to_owned).collect(),
            socket: Some(FileFacts {
                path: "/var/tmp/capstan-rec/docker.sock".into(),
                uid: 0,
                gid: 998,
                mode: 0o660,
            }),
            docker_gid: Some(998),
            data_on_root_fs: Some(true),
            ..DaemonSetup::default()
        }),
    }
}

fn report(s: &Snapshot) -> SecurityReport {
    assess(s, &[], chrono::Utc::now())
}

/// Check ids found per object name.
fn found(r: &SecurityReport, kind: ObjectKind) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in r.findings.iter().filter(|f| f.object.kind == kind) {
        out.entry(f.object.name.clone())
            .or_default()
            .insert(f.check.clone());
    }
    out
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// What every container started with the engine's defaults trips.
const DEFAULTS: [&str; 8] = [
    "4.1", "5.10", "5.11", "5.12", "5.25", "5.26", "5.28", "5.29",
];

fn defaults_and(more: &[&str]) -> BTreeSet<String> {
    let mut s = set(&DEFAULTS);
    s.extend(set(more));
    s
}

#[test]
fn there_are_at_least_thirty_checks_each_with_a_unique_id_a_title_and_a_fix() {
    assert!(CHECKS.len() >= 30, "{}", CHECKS.len());
    let ids: BTreeSet<_> = CHECKS.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), CHECKS.len(), "ids are unique");
    for c in CHECKS {
        assert!(!c.title.is_empty() && !c.fix.is_empty(), "{}", c.id);
        assert_ne!(c.section(), "Other", "{}", c.id);
    }
}

#[test]
fn each_recorded_container_trips_exactly_its_checks_and_the_clean_one_none() {
    let r = report(&recorded());
    let mut got = found(&r, ObjectKind::Container);
    let expected = BTreeMap::from([
        ("rec-caps", defaults_and(&["5.3"])),
        ("rec-devices", defaults_and(&["5.17"])),
        ("rec-mounts", defaults_and(&["5.5", "5.31"])),
        (
            "rec-namespaces",
            set(&[
                "4.1", "5.10", "5.11", "5.12", "5.25", "5.26", "5.28", "5.9", "5.15", "5.16",
                "5.20", "5.30",
            ]),
        ),
        ("rec-ports", defaults_and(&["5.7", "5.13"])),
        ("rec-privileged", defaults_and(&["5.4"])),
        ("rec-propagation", defaults_and(&["5.19"])),
        ("rec-restart", defaults_and(&["5.14", "5.24"])),
        ("rec-seccomp", defaults_and(&["5.21"])),
        ("rec-stopped", defaults_and(&[])),
    ]);
    for (name, checks) in &expected {
        assert_eq!(got.remove(*name).as_ref(), Some(checks), "{name}");
    }
    assert!(got.is_empty(), "rec-clean trips nothing: {got:?}");
    // 25 different container checks tripped
    let tripped: BTreeSet<_> = expected.values().flatten().collect();
    assert!(tripped.len() >= 15, "{}", tripped.len());
}

#[test]
fn findings_say_what_was_found_and_rate_the_worst_higher() {
    let r = report(&recorded());
    let get = |check: &str, name: &str| {
        r.findings
            .iter()
            .find(|f| f.check == check && f.object.name == name)
            .unwrap_or_else(|| panic!("{check} on {name}"))
    };
    let mounts = get("5.5", "rec-mounts");
    assert_eq!(mounts.severity, Severity::Critical);
    assert!(
        mounts.detail.contains("/ at /host (read-only)"),
        "{}",
        mounts.detail
    );
    assert!(
        mounts.detail.contains("/etc at /host-etc (read-write)"),
        "{}",
        mounts.detail
    );
    let socket = get("5.31", "rec-mounts");
    assert!(
        socket
            .detail
            .contains("/var/tmp/capstan-rec/docker.sock at /var/run/docker.sock")
    );
    let caps = get("5.3", "rec-caps");
    assert_eq!(
        caps.detail, "adds NET_ADMIN, SYS_ADMIN",
        "CHOWN is a default one"
    );
    assert_eq!(caps.severity, Severity::Critical);
    let ports = get("5.13", "rec-ports");
    assert_eq!(ports.detail, "publishes 80 → 8080/tcp on every interface");
    assert!(!ports.detail.contains("8081"), "bound to 127.0.0.1");
    assert_eq!(get("5.4", "rec-privileged").severity, Severity::Critical);
    // worst first
    let order: Vec<Severity> = r.findings.iter().map(|f| f.severity).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{order:?}");
    assert!(r.findings.iter().all(|f| !f.fix.is_empty()));
}

#[test]
fn the_recorded_engine_trips_its_own_checks_and_not_the_others() {
    let s = recorded();
    let r = report(&s);
    let engine = found(&r, ObjectKind::Engine)
        .remove(ENGINE)
        .unwrap_or_default();
    assert_eq!(
        engine,
        set(&["1.1.1", "2.7", "2.9", "2.12", "2.14", "2.15", "2.16"])
    );
    let plain = r.findings.iter().find(|f| f.check == "2.7").unwrap();
    assert!(
        plain.detail.contains("tcp://127.0.0.1:58671"),
        "{}",
        plain.detail
    );
    assert_eq!(plain.severity, Severity::High, "loopback only");
    assert_eq!(
        found(&r, ObjectKind::Network).remove("bridge"),
        Some(set(&["2.2"]))
    );
    assert_eq!(
        found(&r, ObjectKind::Image).remove("rec/busybox:1"),
        Some(set(&["4.6"]))
    );
    let status = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap().status;
    for id in ["5.1", "5.2", "3.17", "3.18", "7.2", "7.4", "7.6", "7.8"] {
        assert_eq!(status(id), CheckStatus::NotApplicable, "{id}");
    }
    for id in [
        "2.3", "2.4", "2.5", "2.6", "2.18", "3.15", "3.16", "6.1", "6.2",
    ] {
        assert_eq!(status(id), CheckStatus::Pass, "{id}");
    }
    assert_eq!(
        r.checks.iter().map(|c| c.findings).sum::<usize>(),
        r.findings.len()
    );
}

#[test]
fn engine_settings_trip_their_checks() {
    type Change = fn(&mut Snapshot);
    let cases: [(&str, Change); 12] = [
        ("2.3", |s| s.info.debug = true),
        ("2.4", |s| {
            s.daemon
                .as_mut()
                .unwrap()
                .args
                .push("--iptables=false".into());
        }),
        ("2.5", |s| {
            s.info
                .registry_config
                .insecure_registry_cidrs
                .push("10.0.0.0/8".into());
        }),
        ("2.6", |s| s.info.driver = "aufs".into()),
        ("2.18", |s| s.info.experimental_build = true),
        ("3.15", |s| {
            s.daemon.as_mut().unwrap().socket.as_mut().unwrap().gid = 1000;
        }),
        ("3.16", |s| {
            s.daemon.as_mut().unwrap().socket.as_mut().unwrap().mode = 0o666;
        }),
        ("3.17", |s| {
            s.daemon.as_mut().unwrap().config_file = Some(FileFacts {
                path: "/etc/docker/daemon.json".into(),
                uid: 1000,
                gid: 0,
                mode: 0o644,
            });
        }),
        ("3.18", |s| {
            s.daemon.as_mut().unwrap().config_file = Some(FileFacts {
                path: "/etc/docker/daemon.json".into(),
                uid: 0,
                gid: 0,
                mode: 0o666,
            });
        }),
        ("6.1", |s| {
            for i in 0..=capstan_security::checks::UNUSED_IMAGES_MAX {
                s.image_list.push(docs::ImageEntry {
                    id: format!("sha256:{i}"),
                    tagged: i % 2 == 0,
                    size: 1 << 20,
                });
            }
        }),
        ("6.2", |s| {
            let stopped = s
                .containers
                .iter()
                .find(|c| c.is_stopped())
                .unwrap()
                .clone();
            for i in 0..capstan_security::checks::STOPPED_CONTAINERS_MAX {
                let mut c = stopped.clone();
                c.name = format!("/more-{i}");
                s.containers.push(c);
            }
        }),
        ("5.1", |s| {
            s.info.security_options.push("name=apparmor".into());
        }),
    ];
    let before = report(&recorded());
    for (id, change) in cases {
        let mut s = recorded();
        change(&mut s);
        let after = report(&s);
        let was = before.findings.iter().filter(|f| f.check == id).count();
        let now = after.findings.iter().filter(|f| f.check == id).count();
        assert!(now > was, "{id}: {was} → {now}");
    }
    // a daemon-wide no-new-privileges covers every container
    let mut s = recorded();
    s.daemon
        .as_mut()
        .unwrap()
        .args
        .push("--no-new-privileges".into());
    let r = report(&s);
    assert!(
        !r.findings
            .iter()
            .any(|f| f.check == "5.25" || f.check == "2.14")
    );
    // a remote engine's setup-only checks do not apply
    let mut s = recorded();
    s.daemon = None;
    s.engine = "tcp://10.1.2.3:2375".into();
    let r = report(&s);
    let plain = r.findings.iter().find(|f| f.check == "2.7").unwrap();
    assert_eq!(plain.severity, Severity::Critical, "{plain:?}");
    for id in ["1.1.1", "2.4", "2.14", "2.16", "3.15", "3.16"] {
        let c = r.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.status, CheckStatus::NotApplicable, "{id}");
    }
}

#[test]
fn a_swarm_manager_is_checked_for_autolock_and_overlay_encryption() {
    let mut s = recorded();
    s.info = read("/info", fixture("info-swarm.json")).unwrap();
    s.networks = read("networks", fixture("networks-swarm.json")).unwrap();
    let r = report(&s);
    let networks = found(&r, ObjectKind::Network);
    assert_eq!(networks.get("rec-overlay"), Some(&set(&["7.4"])));
    assert_eq!(networks.get("ingress"), Some(&set(&["7.4"])));
    assert_eq!(networks.get("rec-overlay-enc"), None, "encrypted");
    let swarm = found(&r, ObjectKind::Swarm);
    assert_eq!(
        swarm.get("swarm"),
        Some(&set(&["7.6"])),
        "one manager, 90-day certificates"
    );
    let status = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap().status;
    assert_eq!(status("2.15"), CheckStatus::NotApplicable);
    assert_eq!(status("7.2"), CheckStatus::Pass);
}

#[test]
fn skipped_checks_do_not_run_and_replicas_of_a_service_are_one_object() {
    let mut s = recorded();
    let mut replica = s
        .containers
        .iter()
        .find(|c| c.short_name() == "rec-ports")
        .unwrap()
        .clone();
    replica
        .config
        .labels
        .insert("io.capstan.app".into(), "shop".into());
    replica
        .config
        .labels
        .insert("io.capstan.service".into(), "web".into());
    let mut second = replica.clone();
    second.name = "/shop-web-2".into();
    s.containers.extend([replica, second]);
    let r = assess(&s, &["5.12".to_owned()], chrono::Utc::now());
    assert!(!r.findings.iter().any(|f| f.check == "5.12"));
    let c = r.checks.iter().find(|c| c.id == "5.12").unwrap();
    assert_eq!(c.status, CheckStatus::NotApplicable);
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f.check == "5.13" && f.object.name == "shop/web")
            .count(),
        1
    );
}
