//! Targets: the local engine and a real three-node Swarm (hosts in network namespaces, each
//! with its own dockerd, joined by the real tokens: `scripts/swarm-ground`), listed with their
//! health; ones that do not answer, or answer as something else, say why; bad ones are refused
//! at start.

use capstan_model::{TargetKind, TargetStatus};
use capstan_testkit::{Daemon, free_port, serve_refused};

use crate::bin;

#[tokio::test]
async fn targets_list_the_local_engine_and_a_three_node_swarm_with_its_health() {
    let engine = capstan_testkit::engine().await;
    let swarm = capstan_testkit::swarm_host();
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let config = format!(
        "[[targets]]\nname = \"lab\"\nkind = \"swarm\"\ndocker_host = \"{swarm}\"\n\n\
         [[targets]]\nname = \"gone\"\nkind = \"swarm\"\ndocker_host = \"{dead}\"\n\n\
         [[targets]]\nname = \"single\"\nkind = \"swarm\"\ndocker_host = \"{}\"\n",
        engine.host()
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let (code, out, err) = daemon.cli(&["targets", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let targets: Vec<TargetStatus> = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["local", "lab", "gone", "single"]);

    let local = &targets[0];
    assert_eq!(local.kind, TargetKind::Local);
    assert!(local.healthy, "{local:?}");
    assert_eq!(local.endpoint, engine.host());
    assert!(local.engine_versions[0].starts_with("20.10"), "{local:?}");

    let lab = &targets[1];
    assert!(lab.healthy, "{lab:?}");
    assert_eq!(lab.kind, TargetKind::Swarm);
    assert_eq!((lab.managers, lab.workers, lab.ready), (1, 2, 3), "{lab:?}");
    assert_eq!(lab.leader.as_deref(), Some("capt-node1"));
    let mut hosts: Vec<&str> = lab.nodes.iter().map(|n| n.hostname.as_str()).collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["capt-node1", "capt-node2", "capt-node3"]);
    assert!(
        lab.nodes
            .iter()
            .all(|n| n.state == "ready" && n.availability == "active")
    );
    assert_eq!(lab.engine_versions.len(), 1, "{lab:?}");
    assert!(lab.engine_versions[0].starts_with("20.10"), "{lab:?}");
    let mut addrs: Vec<&str> = lab.nodes.iter().map(|n| n.addr.as_str()).collect();
    addrs.sort_unstable();
    assert_eq!(addrs, ["10.217.0.11", "10.217.0.12", "10.217.0.13"]);

    // an engine that does not answer, and one that answers but manages no Swarm
    let gone = &targets[2];
    assert!(!gone.healthy);
    let why = gone.error.as_deref().unwrap_or_default();
    assert!(why.contains(&dead), "{why}");
    let single = &targets[3];
    assert!(!single.healthy);
    let why = single.error.as_deref().unwrap_or_default();
    assert!(
        why.contains("not in a Swarm") && why.contains("docker swarm init"),
        "{why}"
    );

    // the table, and each Swarm's nodes
    let (code, out, err) = daemon.cli(&["targets", "--nodes"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 managers, 2 workers, 3 ready"), "{out}");
    assert!(out.contains("capt-node1 (leader)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("gone") && l.contains("failing:")),
        "{out}"
    );
}

#[tokio::test]
async fn bad_targets_are_refused_at_start_naming_the_entry() {
    for (config, says) in [
        (
            "[[targets]]\nname = \"local\"\nkind = \"swarm\"\ndocker_host = \"tcp://10.0.0.1:2375\"\n",
            "targets[0].name",
        ),
        (
            "[[targets]]\nname = \"lab\"\nkind = \"nomad\"\ndocker_host = \"tcp://10.0.0.1:2375\"\n",
            "kind",
        ),
        (
            "[[targets]]\nname = \"lab\"\nkind = \"swarm\"\ndocker_host = \"ssh://lab\"\n",
            "targets[0].docker_host",
        ),
        (
            "[[targets]]\nname = \"lab\"\nkind = \"swarm\"\ndocker_host = \"tcp://a:1\"\n[[targets]]\nname = \"lab\"\nkind = \"swarm\"\ndocker_host = \"tcp://b:1\"\n",
            "targets[1].name: lab names two targets",
        ),
        (
            "[[targets]]\nname = \"lab\"\nkind = \"swarm\"\n",
            "docker_host",
        ),
    ] {
        let err = serve_refused(bin(), config).await;
        assert!(err.contains(says), "{config}: {err}");
    }
}
