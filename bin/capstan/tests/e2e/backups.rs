//! Backups of an app's volume into real restic repositories (Debian's `restic`): a local path,
//! and SFTP to an OpenSSH server of the test's own on loopback. The volume's 10,000 files and a
//! database-like dump (made by the app's pre-backup command) come back identical.

use std::time::Duration;

use capstan_testkit::{Daemon, Sshd, docker, eventually, free_port, unique};

use crate::bin;

fn app(schedule: &str) -> String {
    format!(
        r#"x-capstan:
  backups:
    before:
      - service: db
        command: ["sh", "-c", "echo dump of $$(ls /data/files | wc -l) rows > /data/dump.sql"]
{schedule}
services:
  db:
    image: capstan-test/busybox:1
    init: true
    command: ["sleep", "3600"]
    volumes: ["data:/data"]
    stop_grace_period: 1s
volumes:
  data: {{}}
"#
    )
}

/// Runs `script` in the app's replica: what it printed.
fn sh(host: &str, container: &str, script: &str) -> String {
    docker(host, &["exec", container, "sh", "-c", script])
}

/// A checksum of every file under /data in the app's replica, and how many there are.
fn checksum(host: &str, container: &str) -> String {
    sh(
        host,
        container,
        "cd /data && find . -type f | sort | xargs md5sum | md5sum && find . -type f | wc -l",
    )
}

async fn deploy(daemon: &Daemon, dir: &std::path::Path, name: &str, compose: &str) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, out, err) = daemon.cli_in(dir, &["deploy", "-p", name], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
}

fn config(repository: &str, sftp_command: Option<&str>) -> String {
    let sftp = sftp_command.map_or_else(String::new, |c| format!("sftp_command = \"{c}\"\n"));
    format!(
        "[backups]\nrepository = \"{repository}\"\npassword_file = \"vault:restic\"\n{sftp}\
         [alerts]\ndefaults = true\nevaluate_every = \"1s\"\n[logs]\ncollect = false\n"
    )
}

/// Backs `app` up: its snapshot's short id.
async fn backup(daemon: &Daemon, app: &str) -> String {
    let (code, out, err) = daemon.cli(&["backup", app, "-o", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let report: capstan_model::BackupReport = serde_json::from_str(&out).unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    assert_eq!(report.snapshots[0].volume, "data");
    report.snapshots[0].short_id.clone()
}

/// Backs up, deletes, restores: the volume comes back identical.
async fn round_trip(daemon: &Daemon, host: &str, app: &str, container: &str) {
    let id = backup(daemon, app).await;
    let before = checksum(host, container);
    assert!(before.trim_end().ends_with("10001"), "{before}");
    sh(
        host,
        container,
        "rm -rf /data/files /data/dump.sql && echo stray > /data/stray",
    );
    assert_ne!(checksum(host, container), before);
    let (code, out, err) = daemon.cli(&["restore", app, "--snapshot", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("db"),
        "the service was stopped and started again: {out}"
    );
    // the restarted replica, the same container
    let after = eventually(Duration::from_secs(30), "the replica back", || async {
        let state = docker(host, &["inspect", "-f", "{{.State.Running}}", container]);
        (state.trim() == "true").then(|| checksum(host, container))
    })
    .await;
    assert_eq!(after, before, "restored identical (the stray file gone)");
}

#[tokio::test]
async fn volumes_are_backed_up_and_restored_identical_locally_and_over_sftp_on_a_schedule() {
    let engine = capstan_testkit::engine().await;
    let host = capstan_testkit::docker_host();
    let repos = tempfile::tempdir().unwrap();
    let local = repos.path().join("local");
    let mut daemon = Daemon::start_prepared(
        bin(),
        engine.host(),
        &config(&local.display().to_string(), None),
        |data| capstan_testkit::keep_credential(bin(), data, "restic", "restic-s3cret"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let name = unique("capt-bk");
    deploy(&daemon, dir.path(), &name, &app("")).await;
    let container = format!("{name}-db-1");
    sh(
        &host,
        &container,
        "mkdir -p /data/files && cd /data/files && i=0; while [ $i -lt 10000 ]; do echo row $i > f$i; i=$((i+1)); done",
    );

    // a local repository (made on first use)
    round_trip(&daemon, &host, &name, &container).await;
    let dump = docker(&host, &["exec", &container, "cat", "/data/dump.sql"]);
    assert_eq!(
        dump.trim(),
        "dump of 10000 rows",
        "the pre-backup command ran first"
    );
    let (code, out, _) = daemon.cli(&["backups", &name]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains("data")).count(),
        1,
        "{out}"
    );
    // the password is a sealed credential: not in the config, the repository's files or logs
    assert!(
        !std::fs::read_to_string(daemon.data_dir().with_extension("toml"))
            .unwrap()
            .contains("restic-s3cret")
    );
    assert!(!daemon.log().contains("restic-s3cret"));

    // bad input: an unknown snapshot, a volume the app does not have; a viewer may not
    let (code, _, err) = daemon
        .cli(&["restore", &name, "--snapshot", "deadbeef"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no snapshot deadbeef"), "{err}");
    let (code, _, err) = daemon.cli(&["backup", &name, "--volume", "logs"]).await;
    assert_eq!(code, 2, "{err}");
    let (status, body) = daemon
        .post_raw(
            "/api/v1/tokens",
            &serde_json::json!({"name": unique("bk-viewer"), "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let viewer = body["token"].as_str().unwrap().to_owned();
    let refused = reqwest::Client::new()
        .post(format!("{}/api/v1/apps/{name}/backups", daemon.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // a schedule fires by itself; retention keeps the newest two
    deploy(
        &daemon,
        dir.path(),
        &name,
        &app("    every: 2s\n    keep_last: 2"),
    )
    .await;
    let scheduled = eventually(
        Duration::from_mins(2),
        "three scheduled backups",
        || async {
            let taken: Vec<_> = daemon
                .all_events("type=capstan&action=backup_taken")
                .await
                .into_iter()
                .filter(|e| {
                    e.attributes.get("app") == Some(&name) && e.attributes["scheduled"] == "true"
                })
                .collect();
            (taken.len() >= 3).then_some(taken)
        },
    )
    .await;
    assert!(scheduled.len() >= 3);
    deploy(&daemon, dir.path(), &name, &app("    keep_last: 2")).await;
    // (a scheduled backup may still be under way: its retention runs after it)
    eventually(Duration::from_secs(30), "the newest two kept", || async {
        let (code, out, _) = daemon.cli(&["backups", &name, "-o", "json"]).await;
        assert_eq!(code, 0);
        let kept: Vec<capstan_model::Snapshot> = serde_json::from_str(&out).unwrap();
        (kept.len() == 2).then_some(())
    })
    .await;

    // over SFTP to an sshd on loopback, its host key checked
    let sshd = Sshd::start("127.0.0.1", free_port(), None, &[]);
    let sftp = format!(
        "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes root@127.0.0.1 -s sftp",
        sshd.port,
        sshd.path("client_key"),
        sshd.path("known_hosts"),
    );
    let remote = format!("sftp:root@127.0.0.1:{}/repo", sshd.dir().display());
    assert_eq!(daemon.stop().await.code(), Some(0));
    daemon.set_config(&config(&remote, Some(&sftp)));
    daemon.restart().await;
    round_trip(&daemon, &host, &name, &container).await;
    assert!(
        sshd.dir().join("repo").join("config").exists(),
        "the repository is on the SFTP side"
    );

    // a repository that cannot be reached: the backup fails, journaled, and alerts
    let closed = format!(
        "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=3 root@127.0.0.1 -s sftp",
        free_port(),
        sshd.path("client_key"),
        sshd.path("known_hosts"),
    );
    assert_eq!(daemon.stop().await.code(), Some(0));
    daemon.set_config(&config(&remote, Some(&closed)));
    daemon.restart().await;
    let (code, _, err) = daemon.cli(&["backup", &name]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("restic"), "{err}");
    eventually(
        Duration::from_secs(30),
        "the backup_failed alert",
        || async {
            let list: capstan_model::AlertList = daemon.get("/api/v1/alerts").await;
            list.alerts.into_iter().find(|a| {
                a.rule == "backup_failed"
                    && a.state == capstan_model::AlertState::Firing
                    && a.labels.get("app") == Some(&name)
            })
        },
    )
    .await;

    let (code, _, err) = daemon.cli(&["down", &name, "--volumes"]).await;
    assert_eq!(code, 0, "{err}");
}
