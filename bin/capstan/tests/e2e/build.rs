//! `build:` services: the CLI packs the context on its side, the daemon's engine builds it.

use capstan_testkit::{Daemon, unique};

use crate::bin;

const DOCKERFILE: &str = r#"FROM capstan-test/busybox:1 AS base
ARG GREETING=unset
ARG FROM_ENV=unset
RUN echo "$GREETING $FROM_ENV" > /greeting
COPY . /ctx
FROM base AS extra
RUN echo extra > /extra
"#;

const COMPOSE: &str = r#"services:
  web:
    build:
      context: ./app
      args:
        GREETING: hello
        FROM_ENV:
      target: base
    init: true
    command: ["sh", "-c", "cat /greeting; ls /ctx; cat /extra 2>/dev/null || echo no-extra; exec sleep 3600"]
"#;

async fn deploy(daemon: &Daemon, dir: &std::path::Path, app: &str) -> (i32, String, String) {
    daemon
        .cli_in(dir, &["deploy", "-p", app], &[("FROM_ENV", "caller")])
        .await
}

#[tokio::test]
async fn build_services_are_built_from_the_callers_context() {
    let engine = capstan_testkit::engine().await;
    let daemon = Daemon::start(bin(), engine.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("app");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(ctx.join("keep.txt"), "kept\n").unwrap();
    std::fs::write(ctx.join("secret.txt"), "never sent\n").unwrap();
    std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
    let app = unique("capt-build");

    let (code, stdout, stderr) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("built {app}-web")), "{stdout}");
    let container = engine
        .list_containers(false)
        .await
        .unwrap()
        .into_iter()
        .find(|c| capstan_testkit::replica_of(c, &app))
        .unwrap();
    assert_eq!(container.image, format!("{app}-web"));
    let logs = capstan_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the container's output",
        || async {
            let logs = engine.tail_logs(&container.id, 50).await.unwrap();
            logs.contains("no-extra").then_some(logs)
        },
    )
    .await;
    // build args (one from the caller's environment), the target stage, .dockerignore
    assert!(logs.contains("hello caller"), "{logs}");
    assert!(logs.contains("keep.txt"), "{logs}");
    assert!(!logs.contains("secret.txt"), "{logs}");
    let image = engine
        .inspect_image(&format!("{app}-web"))
        .await
        .unwrap()
        .unwrap();

    // the same context again: the build is cached, nothing to roll
    let (code, stdout, stderr) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("unchanged"), "{stdout}");

    // a failing build step fails the deploy before anything changes
    std::fs::write(ctx.join("Dockerfile"), format!("{DOCKERFILE}RUN false\n")).unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        COMPOSE.replace("target: base", "target: extra"),
    )
    .unwrap();
    let (code, stdout, stderr) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("services.web.build") && stderr.contains("non-zero code"),
        "{stderr}"
    );
    let still = engine
        .inspect_container(&container.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.state, "running");
    assert_eq!(
        engine
            .inspect_image(&format!("{app}-web"))
            .await
            .unwrap()
            .unwrap()
            .id,
        image.id
    );

    // a missing context is bad input
    std::fs::write(
        dir.path().join("compose.yaml"),
        COMPOSE.replace("./app", "./nowhere"),
    )
    .unwrap();
    let (code, _, stderr) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("services.web.build"), "{stderr}");

    // a build may not replace an image it did not make (the shared base image here): it would
    // land in whatever runs that name next
    let base = engine
        .inspect_image("capstan-test/busybox:1")
        .await
        .unwrap()
        .unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        COMPOSE.replace("  web:\n", "  web:\n    image: capstan-test/busybox:1\n"),
    )
    .unwrap();
    let (code, _, stderr) = deploy(&daemon, dir.path(), &app).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("was not built by capstan"), "{stderr}");
    let after = engine
        .inspect_image("capstan-test/busybox:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.id, base.id, "the base image was replaced");
}
