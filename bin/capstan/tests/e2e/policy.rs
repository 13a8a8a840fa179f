//! The deploy policy against the real engine: an operator may not become root on the host
//! through a Compose file. Each host-level feature is refused (403, exit 2, nothing created,
//! audited) until an admin allows it for that app; then it deploys and the engine's inspect
//! document shows it applied.

use capstan_testkit::{Daemon, unique};

use crate::bin;

/// A Compose file of one long-running busybox service with `extra` keys.
fn with(extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: capstan-test/busybox:1\n    init: true\n    command: [\"sleep\", \"3600\"]\n{extra}"
    )
}

/// Deploys `compose` as `app` with `token`: (exit code, stdout and stderr).
async fn deploy_as(
    daemon: &Daemon,
    dir: &std::path::Path,
    app: &str,
    compose: &str,
    token: &str,
) -> (i32, String) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, out, err) = daemon
        .cli_in(dir, &["deploy", "-p", app], &[("CAPSTAN_TOKEN", token)])
        .await;
    (code, format!("{out}{err}"))
}

#[tokio::test]
async fn host_level_features_need_an_admins_allowance_per_app() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let (code, operator, err) = daemon
        .cli(&["tokens", "create", "ops", "--role", "operator"])
        .await;
    assert_eq!(code, 0, "{err}");
    let operator = operator.trim().to_owned();
    let host_dir = tempfile::tempdir().unwrap();
    let host_path = host_dir.path().canonicalize().unwrap();
    let bind = format!("    volumes:\n      - {}:/data:ro\n", host_path.display());
    let cases: [(String, String, &str); 4] = [
        (
            "    privileged: true\n".into(),
            "privileged".into(),
            "services.web.privileged",
        ),
        (
            "    cap_add: [NET_ADMIN]\n".into(),
            "cap_add=NET_ADMIN".into(),
            "services.web.cap_add",
        ),
        (
            "    security_opt: [\"seccomp:unconfined\"]\n".into(),
            "security_opt=seccomp:unconfined".into(),
            "services.web.security_opt",
        ),
        (
            bind,
            format!("bind={}", host_path.display()),
            "services.web.volumes",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut refusals = 0;
    for (extra, feature, key) in &cases {
        let app = unique("capt-policy");
        let compose = with(extra);
        let (code, out) = deploy_as(&daemon, dir.path(), &app, &compose, &operator).await;
        assert_eq!(code, 2, "{feature}: {out}");
        refusals += 1;
        assert!(
            out.contains(&format!("compose.yaml:6:5 {key}")),
            "{feature}: {out}"
        );
        assert!(
            out.contains(&format!("(allow: {feature})")),
            "{feature}: {out}"
        );
        let made = engine
            .list_containers(true)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| capstan_testkit::replica_of(c, &app))
            .count();
        assert_eq!(made, 0, "{feature}: a refused deploy created containers");
        let (code, _, _) = daemon.cli(&["releases", &app]).await;
        assert_ne!(code, 0, "{feature}: a refused deploy was recorded");
        // a plan shows what a deploy would refuse
        let (code, plan, err) = daemon
            .cli_in(
                dir.path(),
                &["plan", "-p", &app],
                &[("CAPSTAN_TOKEN", &operator)],
            )
            .await;
        assert_eq!(code, 0, "{err}");
        assert!(
            plan.contains("would refuse") && plan.contains(*key),
            "{plan}"
        );

        // allowed by an admin, for that app alone: the operator's deploy runs, as written
        let (code, _, err) = daemon.cli(&["policy", "allow", &app, feature]).await;
        assert_eq!(code, 0, "{err}");
        let (code, plan, err) = daemon
            .cli_in(
                dir.path(),
                &["plan", "-p", &app],
                &[("CAPSTAN_TOKEN", &operator)],
            )
            .await;
        assert_eq!(code, 0, "{err}");
        assert!(!plan.contains("would refuse"), "{feature} allowed: {plan}");
        if feature == "privileged" {
            // this machine's engine cannot start a privileged container at all (runc: "unable
            // to apply caps: operation not permitted"), so the allowance is shown by the plan
            // above, and applying it by the inspect documents of the cases below
            continue;
        }
        let (code, out) = deploy_as(&daemon, dir.path(), &app, &compose, &operator).await;
        assert_eq!(code, 0, "{feature}: {out}");
        let id = engine
            .list_containers(false)
            .await
            .unwrap()
            .into_iter()
            .find(|c| capstan_testkit::replica_of(c, &app))
            .unwrap()
            .id;
        let inspect = engine.inspect_container_json(&id).await.unwrap();
        let host = &inspect["HostConfig"];
        match feature.as_str() {
            "cap_add=NET_ADMIN" => assert!(
                host["CapAdd"].to_string().contains("NET_ADMIN"),
                "{}",
                host["CapAdd"]
            ),
            "security_opt=seccomp:unconfined" => assert!(
                host["SecurityOpt"].to_string().contains("seccomp"),
                "{}",
                host["SecurityOpt"]
            ),
            _ => assert!(
                inspect["Mounts"]
                    .to_string()
                    .contains(&*host_path.display().to_string()),
                "{}",
                inspect["Mounts"]
            ),
        }
        // another app is not covered by it
        let other = unique("capt-policy");
        let (code, out) = deploy_as(&daemon, dir.path(), &other, &compose, &operator).await;
        assert_eq!(code, 2, "{feature} for another app: {out}");
        refusals += 1;
        let (code, _, err) = daemon.cli(&["down", &app]).await;
        assert_eq!(code, 0, "{err}");
    }

    // the host's root: refused even to the admin until allowed explicitly for the app
    let app = unique("capt-policy");
    let root = with("    volumes:\n      - /:/host:ro\n");
    let (code, out) = deploy_as(&daemon, dir.path(), &app, &root, &daemon.token).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("hands the host over"), "{out}");
    let (code, _, err) = daemon.cli(&["policy", "allow", &app, "bind=/"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out) = deploy_as(&daemon, dir.path(), &app, &root, &daemon.token).await;
    assert_eq!(code, 0, "{out}");
    // taken back: the next deploy is checked without it
    let (code, _, err) = daemon.cli(&["policy", "deny", &app, "bind=/"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out) = deploy_as(&daemon, dir.path(), &app, &root, &daemon.token).await;
    assert_eq!(code, 2, "{out}");
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");

    // an operator may not change the policy, and every refusal is in the audit log
    let (code, _, _) = daemon
        .cli_in(
            dir.path(),
            &["policy", "allow", &app, "privileged"],
            &[("CAPSTAN_TOKEN", &operator)],
        )
        .await;
    assert_eq!(code, 2);
    let audit: capstan_model::AuditLog = daemon.get("/api/v1/audit?limit=500").await;
    let refused = audit
        .entries
        .iter()
        .filter(|e| e.who == "ops" && e.status == 403 && e.path.contains("/deploy"))
        .count();
    assert_eq!(refused, refusals, "refusals audited");
}
