//! Compose parity through a whole deploy: the keys capstan applies reach every replica it
//! makes, and what this engine cannot take is refused naming the key and the engine's
//! version, nothing created.

use capstan_testkit::{BUSYBOX, Daemon, unique};

use crate::bin;

async fn deploy(daemon: &Daemon, dir: &std::path::Path, app: &str, compose: &str) -> (i32, String) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, out, err) = daemon.cli_in(dir, &["deploy", "-p", app], &[]).await;
    (code, format!("{out}{err}"))
}

async fn replicas(engine: &capstan_engine::Engine, app: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for c in engine.list_containers(true).await.unwrap() {
        if capstan_testkit::replica_of(&c, app) {
            out.push(engine.inspect_container_json(&c.id).await.unwrap());
        }
    }
    out
}

#[tokio::test]
async fn resource_keys_reach_every_replica_and_what_the_engine_cannot_take_is_refused() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = unique("capt-parity");

    // scale, memory, cpus and a terminal, through a rollout, on each replica
    let compose = format!(
        "services:\n  web:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    scale: 2\n    mem_limit: 48m\n    memswap_limit: -1\n    cpus: 0.25\n    tty: true\n    pids_limit: 50\n"
    );
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose).await;
    assert_eq!(code, 0, "{said}");
    let made = replicas(&engine, &app).await;
    assert_eq!(made.len(), 2, "scale: 2");
    for r in &made {
        let host = &r["HostConfig"];
        assert_eq!(
            (
                host["Memory"].as_i64(),
                host["MemorySwap"].as_i64(),
                host["NanoCpus"].as_i64(),
                host["PidsLimit"].as_i64(),
                r["Config"]["Tty"].as_bool()
            ),
            (
                Some(48 << 20),
                Some(-1),
                Some(250_000_000),
                Some(50),
                Some(true)
            )
        );
    }

    // start_interval needs engine API 1.44; this engine (Docker 20.10) speaks 1.41
    let other = unique("capt-parity-si");
    let compose = format!(
        "services:\n  web:\n    image: {BUSYBOX}\n    command: sleep 3600\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      start_period: 10s\n      start_interval: 1s\n"
    );
    let (code, said) = deploy(&daemon, dir.path(), &other, &compose).await;
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("services.web.healthcheck.start_interval: this engine speaks API 1.41")
            && said.contains("1.44"),
        "{said}"
    );
    assert!(
        replicas(&engine, &other).await.is_empty(),
        "nothing is made"
    );

    // GPUs are asked of the engine's drivers; this engine has none, and says so
    let gpu = unique("capt-parity-gpu");
    let compose = format!(
        "services:\n  web:\n    image: {BUSYBOX}\n    command: sleep 3600\n    gpus: all\n"
    );
    let (code, said) = deploy(&daemon, dir.path(), &gpu, &compose).await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("could not select device driver"), "{said}");
    let (code, _, err) = daemon.cli(&["down", &gpu]).await;
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}

/// `container_name` names the one replica, through a start-first rollout (the new container
/// made beside the old one takes the name once the old one is gone).
#[tokio::test]
async fn container_name_names_the_replica_through_a_rolling_update() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = unique("capt-named");
    let fixed = unique("capt-fixed-name");
    let compose = |version: &str| {
        format!(
            "services:\n  web:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    container_name: {fixed}\n    environment: [VERSION={version}]\n"
        )
    };
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose("1")).await;
    assert_eq!(code, 0, "{said}");
    let named = |made: &[serde_json::Value]| {
        made.iter()
            .map(|r| {
                r["Name"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    let first = replicas(&engine, &app).await;
    assert_eq!(named(&first), std::slice::from_ref(&fixed));
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose("2")).await;
    assert_eq!(code, 0, "{said}");
    let second = replicas(&engine, &app).await;
    assert_eq!(named(&second), std::slice::from_ref(&fixed));
    assert_ne!(first[0]["Id"], second[0]["Id"], "a new container");
    assert!(
        second[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("VERSION=2"))
    );
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
    assert!(replicas(&engine, &app).await.is_empty());
}

/// `network_mode`: none and host as the engine has them, `service:NAME` in the first replica
/// of another service's namespace (started after it, and made again when it is replaced).
#[tokio::test]
async fn network_modes_reach_the_containers_and_follow_the_service_they_join() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = unique("capt-netmode");
    let compose = |version: &str| {
        format!(
            "services:\n  db:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    environment: [VERSION={version}]\n  sidecar:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    network_mode: service:db\n  isolated:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    network_mode: none\n  hosted:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    network_mode: host\n"
        )
    };
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose("1")).await;
    assert_eq!(code, 0, "{said}");
    let by_service = |made: Vec<serde_json::Value>| {
        made.into_iter()
            .map(|r| {
                (
                    r["Config"]["Labels"]["io.capstan.service"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    r,
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let made = by_service(replicas(&engine, &app).await);
    let network_of = |m: &std::collections::BTreeMap<String, serde_json::Value>, s: &str| {
        m[s]["HostConfig"]["NetworkMode"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(network_of(&made, "isolated"), "none");
    assert_eq!(network_of(&made, "hosted"), "host");
    let db = made["db"]["Id"].as_str().unwrap().to_owned();
    assert_eq!(network_of(&made, "sidecar"), format!("container:{db}"));

    // db replaced: the sidecar is made again, in the new db's namespace
    let (code, out, err) = daemon.cli_in(dir.path(), &["plan", "-p", &app], &[]).await;
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path().join("compose.yaml"), compose("2")).unwrap();
    let (_, planned, _) = daemon.cli_in(dir.path(), &["plan", "-p", &app], &[]).await;
    assert!(
        planned.contains("network_mode: service:db, and db is replaced"),
        "{out}{planned}"
    );
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose("2")).await;
    assert_eq!(code, 0, "{said}");
    let again = by_service(replicas(&engine, &app).await);
    let new_db = again["db"]["Id"].as_str().unwrap().to_owned();
    assert_ne!(new_db, db);
    assert_eq!(network_of(&again, "sidecar"), format!("container:{new_db}"));
    assert_eq!(again["sidecar"]["State"]["Running"], true);

    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}

/// A UDP port is published by the engine itself (capstan's proxy carries TCP): the host port
/// is held while the replica runs, the plan says the service rolls stop-first, and a rolling
/// update goes through with the port held again by the new replica.
#[tokio::test]
async fn udp_ports_are_published_by_the_engine_and_roll_stop_first() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = unique("capt-udp");
    let port = capstan_testkit::free_port();
    let compose = |version: &str| {
        format!(
            "services:\n  dns:\n    image: {BUSYBOX}\n    command: sleep 3600\n    init: true\n    environment: [VERSION={version}]\n    ports: ['{port}:53/udp']\n"
        )
    };
    let held = || std::net::UdpSocket::bind(("127.0.0.1", port)).is_err();
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose("1")).await;
    assert_eq!(code, 0, "{said}");
    let made = replicas(&engine, &app).await;
    assert_eq!(
        made[0]["HostConfig"]["PortBindings"]["53/udp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": port.to_string()}])
    );
    assert!(held(), "the engine holds 127.0.0.1:{port}/udp");
    std::fs::write(dir.path().join("compose.yaml"), compose("2")).unwrap();
    let (_, planned, _) = daemon.cli_in(dir.path(), &["plan", "-p", &app], &[]).await;
    assert!(
        planned.contains("dns rolls stop-first: its UDP ports") && planned.contains("a short gap"),
        "{planned}"
    );
    let (code, said) = deploy(&daemon, dir.path(), &app, &compose("2")).await;
    assert_eq!(code, 0, "{said}");
    let again = replicas(&engine, &app).await;
    assert_eq!(again.len(), 1);
    assert_ne!(again[0]["Id"], made[0]["Id"]);
    assert!(held(), "held again by the new replica");
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!held(), "given back");
}
