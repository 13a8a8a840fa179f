//! Every Compose key capstan implements, checked on a container created through the real engine
//! (its inspect document), in short and long syntax where both exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use capstan_compose::{Options, load};
use capstan_deploy::{Names, SecretPaths, container_spec, network_spec, volume_spec};
use capstan_testkit::unique;
use serde_json::{Value, json};

const COMPOSE: &str = r#"
services:
  web:
    image: capstan-test/busybox:1
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    entrypoint: /bin/sh -c
    environment:
      MODE: production
      EMPTY: ""
    env_file: ./web.env
    ports:
      - "127.0.0.1:8080:80"
      - target: 443
        published: "8443"
        protocol: tcp
    expose: ["3000", 3001]
    volumes:
      - data:/data
      - ./static:/www:ro
      - type: tmpfs
        target: /cache
        tmpfs: {size: 64m, mode: 0o1777}
      - type: volume
        source: logs
        target: /logs
        volume: {nocopy: true}
      - type: bind
        source: ./static
        target: /static2
        bind: {propagation: rprivate}
    networks:
      front:
        aliases: [www]
      back:
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1/
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 5s
    restart: unless-stopped
    deploy:
      labels: {tier: front}
      resources:
        limits: {cpus: "0.5", memory: 64M, pids: 100}
        reservations: {cpus: "0.25", memory: 16M}
    labels: [team=core]
    user: "1000:1000"
    working_dir: /www
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    read_only: true
    security_opt: ["no-new-privileges:true"]
    privileged: false
    init: true
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    tmpfs: ["/run:size=1m", /tmp]
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    sysctls: {net.core.somaxconn: "1024"}
    extra_hosts: ["db.local:10.0.0.5"]
    dns: [10.0.0.2]
    hostname: webhost
    shm_size: 64m
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: "3"}
    configs:
      - site
      - source: site
        target: /etc/site.conf
    secrets:
      - token
      - source: token
        target: other-token
  worker:
    image: capstan-test/busybox:1
    command: sleep 3600
    deploy:
      restart_policy: {condition: on-failure, max_attempts: 4}
    healthcheck:
      disable: true
  tuned:
    image: capstan-test/busybox:1
    command: sleep 3600
    mem_limit: 64m
    memswap_limit: 128m
    mem_reservation: 32m
    mem_swappiness: 10
    cpu_shares: 512
    cpuset: "0"
    cpu_period: 100000
    cpu_quota: 50000
    cpu_rt_period: 1400us
    cpu_rt_runtime: 400
    pids_limit: 64
    oom_score_adj: 100
    oom_kill_disable: true
    dns_search: example.com
    dns_opt: [ndots:2]
    group_add: ["12", mail]
    domainname: example.com
    stdin_open: true
    tty: true
    scale: 2
    attach: false
    pid: host
    ipc: shareable
    uts: host
    userns_mode: host
    cgroup_parent: /capstan-test
    runtime: runc
    device_cgroup_rules: ["c 1:3 mr", "b 7:* rw"]
    blkio_config:
      weight: 300
      weight_device: [{path: /dev/null, weight: 400}]
      device_read_bps: [{path: /dev/null, rate: 12mb}]
      device_write_bps: [{path: /dev/null, rate: 1024}]
      device_read_iops: [{path: /dev/null, rate: 20}]
      device_write_iops: [{path: /dev/null, rate: 30}]
    deploy:
      resources:
        limits: {memory: 64m}
  capped:
    image: capstan-test/busybox:1
    command: sleep 3600
    cpus: 0.75
    devices: ["/dev/null:/dev/mynull:rw", {source: /dev/zero, permissions: r}]
    gpus: all
    networks:
      fixed:
        ipv4_address: 10.231.7.200
    deploy:
      update_config: {order: stop-first}
  stored:
    image: capstan-test/busybox:1
    command: sleep 3600
    storage_opt: {size: 1G}
networks:
  front:
  back:
    internal: true
  fixed:
    attachable: true
    driver_opts: {com.docker.network.bridge.enable_icc: "false"}
    labels: {zone: dmz}
    ipam:
      config:
        - subnet: 10.231.7.0/24
          ip_range: 10.231.7.128/25
          gateway: 10.231.7.1
          aux_addresses: {printer: 10.231.7.5}
volumes:
  data:
  logs:
    driver: local
    driver_opts: {type: tmpfs, device: tmpfs, o: "size=1m"}
    labels: {kept: "no"}
configs:
  site:
    content: "server {}"
secrets:
  token:
    file: ./token.txt
"#;

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[tokio::test]
async fn every_key_reaches_the_container() {
    let engine = capstan_testkit::engine().await;
    let dir = tempfile::tempdir().unwrap();
    let project_name = unique("capt-spec");
    std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
    std::fs::write(dir.path().join("web.env"), "FROM_FILE=1\nMODE=overridden\n").unwrap();
    std::fs::write(dir.path().join("token.txt"), "s3cret").unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    let loaded = load(&Options {
        project_name: Some(project_name.clone()),
        working_dir: dir.path().to_owned(),
        text: None,
        ..Options::default()
    })
    .unwrap();
    let project = loaded.project;
    let names = Names::of(&project);
    let secrets = SecretPaths::new(dir.path().join("materialised"));
    for kind in ["configs", "secrets"] {
        std::fs::create_dir_all(dir.path().join("materialised").join(kind)).unwrap();
    }
    std::fs::write(dir.path().join("materialised/configs/site"), "server {}").unwrap();
    std::fs::write(dir.path().join("materialised/secrets/token"), "s3cret").unwrap();
    for net in project.networks.keys().chain(&["default".to_owned()]) {
        engine
            .ensure_network(&network_spec(&project, net))
            .await
            .unwrap();
    }
    for vol in project.volumes.keys() {
        engine
            .ensure_volume(&volume_spec(&project, vol))
            .await
            .unwrap();
    }

    let mut created = Vec::new();
    let mut inspect = BTreeMap::new();
    for service in ["web", "worker", "tuned", "capped"] {
        let spec = container_spec(&project, service, 1, 7, &secrets).unwrap();
        let id = engine
            .create_from_spec(&names.container(service, 1), &spec)
            .await
            .unwrap();
        created.push(id.clone());
        inspect.insert(service, engine.inspect_container_json(&id).await.unwrap());
    }
    let web = &inspect["web"];
    let config = &web["Config"];
    let host = &web["HostConfig"];

    // identity and labels
    assert_eq!(web["Name"], format!("/{project_name}-web-1"));
    let l = &config["Labels"];
    for (k, v) in [
        ("io.capstan.app", project_name.as_str()),
        ("io.capstan.service", "web"),
        ("io.capstan.release", "7"),
        ("io.capstan.replica", "1"),
        ("com.docker.compose.project", project_name.as_str()),
        ("com.docker.compose.service", "web"),
        ("team", "core"),
        ("tier", "front"),
    ] {
        assert_eq!(l[k], v, "label {k}");
    }
    assert_eq!(
        l["io.capstan.spec"],
        capstan_deploy::spec_hash(&project.services["web"])
    );
    // process
    assert_eq!(config["Image"], "capstan-test/busybox:1");
    assert_eq!(
        config["Cmd"],
        json!(["httpd", "-f", "-p", "80", "-h", "/www"])
    );
    assert_eq!(config["Entrypoint"], json!(["/bin/sh", "-c"]));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for e in ["MODE=production", "EMPTY=", "FROM_FILE=1"] {
        assert!(env.contains(&e), "{e} in {env:?}");
    }
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(config["WorkingDir"], "/www");
    assert_eq!(config["Hostname"], "webhost");
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(config["StopTimeout"], 90);
    // ports are exposed, never bound on the host (capstan's proxy publishes them)
    let exposed: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(exposed, ["3000/tcp", "3001/tcp", "443/tcp", "80/tcp"]);
    assert!(
        host["PortBindings"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
    );
    // healthcheck
    let hc = &config["Healthcheck"];
    assert_eq!(
        hc["Test"],
        json!(["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/"])
    );
    assert_eq!(
        (
            hc["Interval"].as_i64(),
            hc["Timeout"].as_i64(),
            hc["Retries"].as_i64(),
            hc["StartPeriod"].as_i64()
        ),
        (
            Some(1_000_000_000),
            Some(2_000_000_000),
            Some(3),
            Some(5_000_000_000)
        )
    );
    // host settings
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["CpuShares"], 256);
    assert_eq!(host["Memory"], 64 << 20);
    assert_eq!(host["MemoryReservation"], 16 << 20);
    assert_eq!(host["PidsLimit"], 100);
    assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
    assert_eq!(host["CapDrop"], json!(["MKNOD"]));
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges:true"]));
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["Init"], true);
    assert_eq!(host["Tmpfs"], json!({"/run": "size=1m", "/tmp": ""}));
    let mut ulimits: Vec<(String, i64, i64)> = host["Ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["Name"].as_str().unwrap().to_owned(),
                u["Soft"].as_i64().unwrap(),
                u["Hard"].as_i64().unwrap(),
            )
        })
        .collect();
    ulimits.sort();
    assert_eq!(
        ulimits,
        [
            ("nofile".to_owned(), 1024, 2048),
            ("nproc".to_owned(), 512, 512)
        ]
    );
    assert_eq!(host["Sysctls"], json!({"net.core.somaxconn": "1024"}));
    assert_eq!(host["ExtraHosts"], json!(["db.local:10.0.0.5"]));
    assert_eq!(host["Dns"], json!(["10.0.0.2"]));
    assert_eq!(host["ShmSize"], 64 << 20);
    assert_eq!(
        host["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}})
    );
    // mounts: named volumes (prefixed), binds (absolute), tmpfs, configs and secrets read-only
    let mounts: BTreeMap<&str, &Value> = host["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["Target"].as_str().unwrap(), m))
        .collect();
    assert_eq!(mounts["/data"]["Type"], "volume");
    assert_eq!(mounts["/data"]["Source"], format!("{project_name}_data"));
    assert_eq!(mounts["/www"]["Type"], "bind");
    assert_eq!(
        mounts["/www"]["Source"],
        dir.path().join("static").display().to_string()
    );
    assert_eq!(mounts["/www"]["ReadOnly"], true);
    assert_eq!(mounts["/cache"]["Type"], "tmpfs");
    assert_eq!(get(mounts["/cache"], "TmpfsOptions.SizeBytes"), 64 << 20);
    assert_eq!(get(mounts["/cache"], "TmpfsOptions.Mode"), 0o1777);
    assert_eq!(get(mounts["/logs"], "VolumeOptions.NoCopy"), true);
    assert_eq!(
        get(mounts["/static2"], "BindOptions.Propagation"),
        "rprivate"
    );
    assert_eq!(
        mounts["/site"]["Source"],
        dir.path()
            .join("materialised/configs/site")
            .display()
            .to_string()
    );
    assert_eq!(mounts["/etc/site.conf"]["ReadOnly"], true);
    assert_eq!(mounts["/run/secrets/token"]["ReadOnly"], true);
    assert_eq!(
        mounts["/run/secrets/other-token"]["Source"],
        dir.path()
            .join("materialised/secrets/token")
            .display()
            .to_string()
    );
    // networks with the service name and aliases
    let nets = web["NetworkSettings"]["Networks"].as_object().unwrap();
    let mut joined: Vec<&String> = nets.keys().collect();
    joined.sort();
    assert_eq!(
        joined,
        [
            &format!("{project_name}_back"),
            &format!("{project_name}_front")
        ]
    );
    let aliases = nets[&format!("{project_name}_front")]["Aliases"]
        .as_array()
        .unwrap();
    assert!(
        aliases.contains(&json!("web")) && aliases.contains(&json!("www")),
        "{aliases:?}"
    );

    // the worker: shell command split, restart policy from deploy, healthcheck disabled,
    // the default network
    let worker = &inspect["worker"];
    assert_eq!(worker["Config"]["Cmd"], json!(["sleep", "3600"]));
    assert_eq!(
        worker["HostConfig"]["RestartPolicy"],
        json!({"Name": "on-failure", "MaximumRetryCount": 4})
    );
    assert_eq!(worker["Config"]["Healthcheck"]["Test"], json!(["NONE"]));
    assert!(
        worker["NetworkSettings"]["Networks"]
            .get(format!("{project_name}_default"))
            .is_some()
    );

    // resources and process settings given as service keys
    let tuned = &inspect["tuned"];
    let (config, host) = (&tuned["Config"], &tuned["HostConfig"]);
    for (key, want) in [
        ("Memory", json!(64 << 20)),
        ("MemorySwap", json!(128 << 20)),
        ("MemoryReservation", json!(32 << 20)),
        ("MemorySwappiness", json!(10)),
        ("CpuShares", json!(512)),
        ("CpusetCpus", json!("0")),
        ("CpuPeriod", json!(100_000)),
        ("CpuQuota", json!(50_000)),
        ("CpuRealtimePeriod", json!(1400)),
        ("CpuRealtimeRuntime", json!(400)),
        ("PidsLimit", json!(64)),
        ("OomScoreAdj", json!(100)),
        ("OomKillDisable", json!(true)),
        ("DnsSearch", json!(["example.com"])),
        ("DnsOptions", json!(["ndots:2"])),
        ("GroupAdd", json!(["12", "mail"])),
        ("PidMode", json!("host")),
        ("IpcMode", json!("shareable")),
        ("UTSMode", json!("host")),
        ("UsernsMode", json!("host")),
        ("CgroupParent", json!("/capstan-test")),
        ("Runtime", json!("runc")),
        ("DeviceCgroupRules", json!(["c 1:3 mr", "b 7:* rw"])),
        (
            "BlkioDeviceReadBps",
            json!([{"Path": "/dev/null", "Rate": 12 << 20}]),
        ),
        (
            "BlkioDeviceWriteBps",
            json!([{"Path": "/dev/null", "Rate": 1024}]),
        ),
        (
            "BlkioDeviceReadIOps",
            json!([{"Path": "/dev/null", "Rate": 20}]),
        ),
        (
            "BlkioDeviceWriteIOps",
            json!([{"Path": "/dev/null", "Rate": 30}]),
        ),
    ] {
        assert_eq!(host[key], want, "HostConfig.{key}");
    }
    assert_eq!(
        (&config["Domainname"], &config["OpenStdin"], &config["Tty"]),
        (&json!("example.com"), &json!(true), &json!(true))
    );
    assert_eq!(inspect["capped"]["HostConfig"]["NanoCpus"], 750_000_000);
    assert_eq!(
        inspect["capped"]["HostConfig"]["Devices"],
        json!([
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"},
            {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/zero", "CgroupPermissions": "r"}
        ])
    );
    assert_eq!(
        inspect["capped"]["HostConfig"]["DeviceRequests"],
        json!([{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}])
    );
    // a fixed address on a network with its own pool, options and labels; a volume with its
    // driver's options and the file's labels
    let fixed = format!("{project_name}_fixed");
    assert_eq!(
        inspect["capped"]["NetworkSettings"]["Networks"][&fixed]["IPAMConfig"]["IPv4Address"],
        "10.231.7.200"
    );
    let net = engine
        .networks_json()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n["Name"] == fixed)
        .unwrap();
    assert_eq!(net["Attachable"], true);
    assert_eq!(
        net["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    assert_eq!(net["Labels"]["zone"], "dmz");
    assert_eq!(net["Labels"]["io.capstan.app"], project_name.as_str());
    assert_eq!(
        net["IPAM"]["Config"],
        json!([{"Subnet": "10.231.7.0/24", "IPRange": "10.231.7.128/25", "Gateway": "10.231.7.1", "AuxiliaryAddresses": {"printer": "10.231.7.5"}}])
    );
    // the same spec again is a no-op; one asking otherwise is refused, saying what differs
    engine
        .ensure_network(&network_spec(&project, "fixed"))
        .await
        .unwrap();
    let mut other = network_spec(&project, "fixed");
    other.internal = true;
    other.ipam.as_mut().unwrap().pools[0].subnet = Some("10.231.8.0/24".into());
    let e = engine.ensure_network(&other).await.unwrap_err().to_string();
    assert!(
        e.contains("internal false (wants true)")
            && e.contains("subnets 10.231.7.0/24 (wants 10.231.8.0/24)"),
        "{e}"
    );
    let logs = engine
        .volumes_json()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v["Name"] == format!("{project_name}_logs"))
        .unwrap();
    assert_eq!(logs["Options"]["type"], "tmpfs");
    assert_eq!(logs["Labels"]["kept"], "no");
    // weights are sent; an engine whose kernel has no IO scheduler weights discards them
    // (with a warning capstan logs), so they are checked as sent
    let spec = container_spec(&project, "tuned", 1, 7, &secrets).unwrap();
    assert_eq!(spec.blkio.weight, Some(300));
    assert_eq!(spec.blkio.weight_device, [("/dev/null".to_owned(), 400)]);
    // scale is the replica count, and neither it nor attach shapes the container
    assert_eq!(
        capstan_deploy::plan::replicas_of(&project.services["tuned"]),
        2
    );
    let mut unscaled = project.services["tuned"].clone();
    unscaled.scale = None;
    unscaled.attach = None;
    assert_eq!(
        capstan_deploy::spec_hash(&unscaled),
        capstan_deploy::spec_hash(&project.services["tuned"])
    );
    // what this engine cannot do is its refusal, naming the setting (overlay on ext4)
    let spec = container_spec(&project, "stored", 1, 7, &secrets).unwrap();
    let e = engine
        .create_from_spec(&names.container("stored", 1), &spec)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("storage-opt"), "{e}");
    // and a runtime it does not have
    let mut spec = container_spec(&project, "capped", 1, 7, &secrets).unwrap();
    spec.runtime = Some("capstan-no-such-runtime".into());
    let e = engine
        .create_from_spec(&names.container("norun", 1), &spec)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("capstan-no-such-runtime"), "{e}");

    for id in created {
        engine.remove_container(&id, true).await.unwrap();
    }
    for net in ["front", "back", "fixed", "default"] {
        engine
            .remove_network(&names.network(&project, net))
            .await
            .unwrap();
    }
    for vol in ["data", "logs"] {
        engine
            .remove_volume(&names.volume(&project, vol))
            .await
            .unwrap();
    }
}

#[test]
fn unusable_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: a\n    shm_size: lots\n",
    )
    .unwrap();
    let project = load(&Options {
        working_dir: dir.path().to_owned(),
        text: None,
        ..Options::default()
    })
    .unwrap()
    .project;
    let err = container_spec(&project, "web", 1, 1, &SecretPaths::new(dir.path())).unwrap_err();
    assert!(
        err.to_string().starts_with("services.web.shm_size: "),
        "{err}"
    );
}

/// What `down` does when a network keeps endpoints: every endpoint is disconnected by force,
/// after which the network can be removed (a running container stays, off the network).
#[tokio::test]
async fn endpoints_left_on_a_network_are_disconnected_by_force() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let name = unique("capt-netforce");
    engine
        .ensure_network(&capstan_engine::NetworkSpec {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = capstan_engine::ContainerSpec {
        image: capstan_testkit::BUSYBOX.to_owned(),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        networks: vec![capstan_engine::Attachment {
            network: name.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let id = engine.create_from_spec(&name, &spec).await.unwrap();
    engine.start_container(&id).await.unwrap();
    let busy = engine.remove_network(&name).await.unwrap_err();
    assert!(busy.to_string().contains("active endpoints"), "{busy}");

    // a name with no endpoint on the network is passed over
    let never = vec![format!("{name}-never-attached")];
    assert_eq!(engine.disconnect_all(&name, &never).await.unwrap(), 1);
    engine.remove_network(&name).await.unwrap();
    let json = engine.inspect_container_json(&id).await.unwrap();
    assert_eq!(
        json["State"]["Running"], true,
        "the container is left running"
    );
    assert!(json["NetworkSettings"]["Networks"].get(&name).is_none());
    // a network that is gone is an error that says so
    let gone = engine.disconnect_all(&name, &[]).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    engine.remove_container(&id, true).await.unwrap();
}
