//! The host security checks against the run's real engine: containers made (with the docker
//! CLI, as a user would) to trip 24 checks, and one that trips none; `capstan security` reports
//! exactly those, journals each new finding and each resolved one, and a `security` alert rule
//! fires for the worst. Other tests' containers share the engine, so only this test's are
//! compared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::{Alert, CapstanAction, ObjectKind, SecurityReport};
use capstan_testkit::{BUSYBOX, Daemon, eventually, unique};

use crate::bin;

/// `docker ARGS` against the test engine; panics with its stderr when it fails.
fn docker(host: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs a container (`start`), or only creates it: the checks read what it was configured
/// with either way. Where this machine cannot grant what it asks for (a privileged container
/// inside an unprivileged machine), it is only created.
fn container(host: &str, name: &str, start: bool, flags: &[&str]) {
    let mut run = vec!["run", "-d", "--name", name];
    run.extend_from_slice(flags);
    run.extend([BUSYBOX, "sleep", "600"]);
    if !start || docker(host, &run).is_err() {
        let _ = docker(host, &["rm", "-f", name]);
        let mut create = vec!["create", "--name", name];
        create.extend_from_slice(flags);
        create.extend([BUSYBOX, "sleep", "600"]);
        docker(host, &create).unwrap_or_else(|e| panic!("docker create {name}: {e}"));
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Check ids found per container name.
fn by_container(r: &SecurityReport) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in r
        .findings
        .iter()
        .filter(|f| f.object.kind == ObjectKind::Container)
    {
        out.entry(f.object.name.clone())
            .or_default()
            .insert(f.check.clone());
    }
    out
}

#[tokio::test]
async fn containers_made_to_trip_checks_are_reported_journaled_and_alerted_on() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let host = engine.host().to_owned();
    let socket = host.trim_start_matches("unix://").to_owned();
    let daemon = Daemon::start_with(
        bin(),
        &host,
        r#"[logs]
collect = false
[metrics]
history = false
[alerts]
evaluate_every = "1s"
[[alerts.rules]]
name = "host-risk"
security = "critical"
"#,
    )
    .await;
    let prefix = unique("capt-sec");
    let (loud, wide, clean) = (
        format!("{prefix}-loud"),
        format!("{prefix}-wide"),
        format!("{prefix}-clean"),
    );
    let bind = tempfile::tempdir().unwrap();
    let shared = format!(
        "type=bind,src={},dst=/shared,bind-propagation=rshared",
        bind.path().display()
    );
    let socket_mount = format!("{socket}:/var/run/docker.sock");
    // created, never started: it would publish a port on every interface
    container(
        &host,
        &loud,
        false,
        &[
            "--privileged",
            "--pid",
            "host",
            "--ipc",
            "host",
            "--uts",
            "host",
            "-p",
            "99:8080",
            "--security-opt",
            "seccomp=unconfined",
            "--cgroup-parent",
            "/capstan-e2e",
            "--restart",
            "always",
            "--device",
            "/dev/null:/dev/xnull",
        ],
    );
    container(
        &host,
        &wide,
        true,
        &[
            "--network",
            "host",
            "--userns",
            "host",
            "-v",
            "/etc:/host-etc:ro",
            "-v",
            &socket_mount,
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "SYS_PTRACE",
            "--mount",
            &shared,
        ],
    );
    // on no network at all: a network made now could meet an own-engine test's dockerd
    // starting, which clears the host's DOCKER nat chain for a moment
    container(
        &host,
        &clean,
        true,
        &[
            "--user",
            "1000:1000",
            "--memory",
            "64m",
            "--cpu-shares",
            "512",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--health-cmd",
            "true",
            "--pids-limit",
            "64",
            "--network",
            "none",
            "--restart",
            "on-failure:3",
        ],
    );

    let (code, out, err) = daemon.cli(&["security", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let report: SecurityReport = serde_json::from_str(&out).unwrap();
    let mut found = by_container(&report);
    let defaults = ["4.1", "5.10", "5.11", "5.12", "5.25", "5.26", "5.28"];
    let mut expected_loud = set(&defaults);
    expected_loud.extend(set(&[
        "5.29", "5.4", "5.15", "5.16", "5.20", "5.7", "5.13", "5.21", "5.24", "5.14", "5.17",
    ]));
    let mut expected_wide = set(&defaults);
    expected_wide.extend(set(&["5.9", "5.30", "5.5", "5.31", "5.3", "5.19"]));
    assert_eq!(found.remove(&loud), Some(expected_loud.clone()), "{loud}");
    assert_eq!(found.remove(&wide), Some(expected_wide.clone()), "{wide}");
    assert_eq!(
        found.remove(&clean),
        None,
        "the clean container trips nothing"
    );
    let tripped: BTreeSet<_> = expected_loud.union(&expected_wide).collect();
    assert!(tripped.len() >= 15, "{}", tripped.len());
    // the engine's own: it answers plain TCP too (scripts/test starts it so)
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "2.7" && f.object.kind == ObjectKind::Engine),
        "{:?}",
        report.findings.iter().map(|f| &f.check).collect::<Vec<_>>()
    );

    // people read a table with the fix; --fail-on gives exit 1
    let (code, table, _) = daemon.cli(&["security", "--fail-on", "critical"]).await;
    assert_eq!(code, 1, "{table}");
    assert!(table.contains(&format!("container {wide}")), "{table}");
    assert!(table.contains("fix: remove the socket's volume"), "{table}");

    // each new finding is journaled once, with its check and object
    let journaled = |action: CapstanAction, name: String| {
        let daemon = &daemon;
        async move {
            daemon
                .all_events(&format!("type=capstan&action={}", action.as_str()))
                .await
                .into_iter()
                .filter(|e| e.attributes.get("name") == Some(&name))
                .filter_map(|e| e.attributes.get("check").cloned())
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(
        journaled(CapstanAction::SecurityFinding, wide.clone()).await,
        expected_wide
    );

    // the alert rule fires for each critical finding
    let alerts: Vec<Alert> =
        eventually(Duration::from_secs(30), "critical findings alerted", || {
            let daemon = &daemon;
            let wide = wide.clone();
            async move {
                let list: capstan_model::AlertList = daemon.get("/api/v1/alerts").await;
                let mine: Vec<Alert> = list
                    .alerts
                    .into_iter()
                    .filter(|a| a.labels.get("object") == Some(&wide))
                    .collect();
                (mine.len() >= 2).then_some(mine)
            }
        })
        .await;
    let checks: BTreeSet<_> = alerts.iter().map(|a| a.labels["check"].clone()).collect();
    assert_eq!(
        checks,
        set(&["5.3", "5.31"]),
        "5.5 of a read-only /etc is high, not critical"
    );

    // a removed container's findings are resolved (the checks run again after it goes)
    docker(&host, &["rm", "-f", &wide]).unwrap();
    eventually(Duration::from_secs(30), "findings resolved", || {
        let (daemon, journaled) = (&daemon, &journaled);
        let (wide, expected) = (wide.clone(), expected_wide.clone());
        async move {
            let _: SecurityReport = daemon.get("/api/v1/security").await;
            (journaled(CapstanAction::SecurityResolved, wide).await == expected).then_some(())
        }
    })
    .await;
    let after: SecurityReport = daemon.get("/api/v1/security?severity=high").await;
    assert!(
        after
            .findings
            .iter()
            .all(|f| f.severity >= capstan_model::Severity::High)
    );
    assert!(!by_container(&after).contains_key(&wide));
    assert!(by_container(&after).contains_key(&loud));

    // bad input: a clear 400, nothing run
    for (query, says) in [("severity=bogus", "severity"), ("colour=red", "colour")] {
        let (status, body) = daemon
            .get_raw(&format!("/api/v1/security?{query}"), Some(&daemon.token))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
    }

    for name in [&loud, &clean] {
        docker(&host, &["rm", "-f", name]).unwrap();
    }
}

#[tokio::test]
async fn a_config_that_skips_an_unknown_check_is_refused() {
    let err =
        capstan_testkit::serve_refused(bin(), "[security]\nskip = [\"5.4\", \"9.9\"]\n").await;
    assert!(err.contains("security.skip[1]"), "{err}");
    assert!(err.contains("\"9.9\" is not a check id"), "{err}");
    let err = capstan_testkit::serve_refused(bin(), "[security]\nevery = \"1s\"\n").await;
    assert!(err.contains("security.every"), "{err}");
}
