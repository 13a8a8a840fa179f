//! The pipeline end to end with real parts: a bare repository served by a real `git daemon`,
//! real `git push`es whose post-receive hook posts a GitHub-format delivery signed with the
//! app's secret (openssl computes the HMAC, curl sends it), the run's real engine building
//! and its real registry receiving the image, and the app's rollout serving the new content.

use std::time::Duration;

use capstan_model::{Build, Release};
use capstan_testkit::{Daemon, GitServer, eventually, free_port, unique};

use crate::bin;

/// The app's Dockerfile; `FROM` an image of the run's registry (BuildKit resolves base
/// images in their registry, never the engine's own store).
const DOCKERFILE: &str = "FROM BASE
RUN mkdir -p /www
COPY index.html /www/index.html
RUN echo built > /www/built
CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]
";

fn compose(image: &str, port: u16, repository: &str) -> String {
    format!(
        r#"x-capstan:
  source:
    repository: {repository}
    branch: main
services:
  web:
    image: {image}
    build:
      context: .
    ports: ["{port}:80"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      retries: 3
    stop_grace_period: 1s
"#
    )
}

async fn builds(daemon: &Daemon, app: &str) -> Vec<Build> {
    daemon.get(&format!("/api/v1/builds?app={app}")).await
}

/// The build of `commit`, once it ended.
async fn ended(daemon: &Daemon, app: &str, commit: &str) -> Build {
    eventually(Duration::from_mins(2), "the build's end", || async {
        builds(daemon, app)
            .await
            .into_iter()
            .find(|b| b.commit == commit && !matches!(b.status.as_str(), "queued" | "running"))
    })
    .await
}

async fn served(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_git_push_is_built_pushed_deployed_and_superseded_failed_or_gated_ones_are_not() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    // logs collected: the builds' own (no container of the shared engine's)
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncontainers = [\"capt-none-*\"]\n",
    )
    .await;
    let repo = GitServer::start("shop").await;
    let app = unique("pipe");
    let port = free_port();
    let image = format!("{}/capt/{app}", capstan_testkit::registry());

    let base = format!("{}/capt/{app}-base", capstan_testkit::registry());
    capstan_testkit::push_versions(&engine, &base, &["1"]).await;
    let dockerfile = DOCKERFILE.replace("BASE", &format!("{base}:1"));

    // the first release, deployed by hand from a clone
    repo.push(
        "first",
        &[
            ("Dockerfile", &dockerfile),
            ("index.html", "v1\n"),
            ("compose.yaml", &compose(&image, port, &repo.url)),
        ],
    );
    let (code, out, err) = daemon
        .cli_in(&repo.work(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(served(port).await, "v1\n");

    // its source came with its Compose file (x-capstan.source); its hook: every push now
    // builds and deploys
    let (code, out, err) = daemon.cli(&["hooks", &app, "-o", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let hook: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hook["source"]["repository"], repo.url.as_str(), "{hook}");
    repo.hook(
        hook["url"].as_str().unwrap(),
        hook["secret"].as_str().unwrap(),
    );

    let v2 = repo.push("serve v2", &[("index.html", "v2\n")]);
    let built = ended(&daemon, &app, &v2).await;
    assert_eq!(built.status, "succeeded", "{built:#?}");
    assert_eq!(
        (built.author.as_str(), built.message.as_str()),
        ("Pat Pusher", "serve v2")
    );
    // the engine has BuildKit (API 1.41): it builds
    assert_eq!(built.builder, "buildkit");
    assert!(built.digest.starts_with("sha256:"), "{built:#?}");
    assert_eq!(served(port).await, "v2\n");
    // the ledger links commit, build, digest and release
    let releases: Vec<Release> = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    let newest = &releases[0];
    assert_eq!(Some(newest.number), built.release);
    assert_eq!(newest.source["build"]["commit"], v2.as_str());
    assert_eq!(newest.source["build"]["id"], built.id);
    assert_eq!(newest.actor, "pipeline");
    let pinned = newest.model["services"]["web"]["image"].as_str().unwrap();
    assert_eq!(pinned, format!("{image}:{}@{}", &v2[..12], built.digest));
    let (code, out, _) = daemon.cli(&["releases", &app]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("build {} @{}", built.id, &v2[..12])),
        "{out}"
    );
    // the image is in the registry by that digest
    let (code, out, err) = daemon.cli(&["hooks", &app]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accepted"), "{out}");
    // its log is stored and searchable like a container's
    let q = format!("build%3A{}", built.id);
    eventually(
        Duration::from_secs(30),
        "the build's log stored",
        || async {
            let page: capstan_model::LogPage = daemon.get(&format!("/api/v1/logs?q={q}")).await;
            (page.total >= 5).then_some(())
        },
    )
    .await;
    let (code, out, err) = daemon.cli(&["builds", "logs", &built.id.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("[3/4] COPY index.html /www/index.html")),
        "{out}"
    );

    // two pushes at once: the first (a slow build: its step waits on the test) is superseded,
    // only the second deploys
    let gate = capstan_testkit::Gate::start(&engine).await;
    let slow = dockerfile.replace(
        "RUN echo built",
        &format!("RUN wget -q -O- {} && echo built", gate.url),
    );
    let v3 = repo.push("slow v3", &[("Dockerfile", &slow), ("index.html", "v3\n")]);
    let running = eventually(Duration::from_secs(30), "v3 building", || async {
        builds(&daemon, &app)
            .await
            .into_iter()
            .find(|b| b.commit == v3 && b.status == "running")
    })
    .await;
    // a running build cannot be run again; one that is not there neither
    let (code, _, err) = daemon
        .cli(&["builds", "retry", &running.id.to_string()])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("wait for its end"), "{err}");
    let (code, _, err) = daemon.cli(&["builds", "retry", "999999"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no build 999999"), "{err}");
    // its page in a browser: its log live, and its status as it changes
    let browser = capstan_testkit::Browser::start().await;
    let client = browser.client(1280, 900).await;
    crate::dashboard::sign_in_with_token(&client, &daemon).await;
    crate::dashboard::goto(&client, &daemon, &format!("#/builds/{}", running.id)).await;
    crate::dashboard::wait_text(&client, "#build-status", "running").await;
    crate::dashboard::wait_text(&client, "#build-log", "wget").await;
    let v4 = repo.push("v4", &[("index.html", "v4\n")]);
    crate::dashboard::wait_text(&client, "#build-status", "superseded").await;
    // v4 (the same Dockerfile) goes on, and so does v3's retry below
    gate.open();
    crate::dashboard::shoot(&client, "build").await;
    let third = ended(&daemon, &app, &v3).await;
    assert_eq!(third.status, "superseded", "{third:#?}");
    assert_eq!(third.release, None);
    let fourth = ended(&daemon, &app, &v4).await;
    assert_eq!(fourth.status, "succeeded", "{fourth:#?}");
    assert_eq!(served(port).await, "v4\n");
    // the app's page names each release's build and commit, and lists the deliveries
    crate::dashboard::goto(&client, &daemon, &format!("#/apps/{app}")).await;
    crate::dashboard::wait_text(
        &client,
        "#main",
        &format!("build {} @{}", fourth.id, &v4[..12]),
    )
    .await;
    crate::dashboard::wait_text(&client, "#deliveries", "accepted").await;
    crate::dashboard::goto(&client, &daemon, "#/builds").await;
    crate::dashboard::wait_text(&client, "#builds", "superseded").await;
    crate::dashboard::shoot(&client, "builds").await;
    let releases: Vec<Release> = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    assert!(
        releases
            .iter()
            .all(|r| r.source["build"]["commit"] != v3.as_str()),
        "v3 was never deployed"
    );

    // a Dockerfile that fails at its third step: the record says which and why, nothing is
    // deployed
    let broken = dockerfile.replace(
        "COPY index.html /www/index.html",
        "RUN echo about to fail && exit 3",
    );
    let v5 = repo.push("broken", &[("Dockerfile", &broken), ("index.html", "v5\n")]);
    let failed = ended(&daemon, &app, &v5).await;
    assert_eq!(failed.status, "failed", "{failed:#?}");
    assert_eq!(
        failed.detail["failed_at"], "[3/4] RUN echo about to fail && exit 3",
        "{failed:#?}"
    );
    assert!(failed.error.contains("exit code: 3"), "{}", failed.error);
    assert_eq!(failed.release, None);
    let after: Vec<Release> = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    assert_eq!(after.len(), releases.len(), "nothing deployed");
    assert_eq!(served(port).await, "v4\n");
    let (code, out, _) = daemon.cli(&["builds", &app]).await;
    assert_eq!(code, 0);
    for status in ["succeeded", "superseded", "failed"] {
        assert!(out.contains(status), "{out}");
    }

    // previews: a push to another branch deploys <app>-<branch> (no published port: the
    // app's own are the app's), removed when its time is up; a fork's pull request is refused
    let (code, _, err) = daemon
        .cli(&["hooks", &app, "--repository", &repo.url, "--previews", "8s"])
        .await;
    assert_eq!(code, 0, "{err}");
    let feature = repo.push_branch(
        "feature/x",
        "try x",
        &[("Dockerfile", &dockerfile), ("index.html", "x\n")],
    );
    let preview = format!("{app}-feature-x");
    let built = eventually(Duration::from_mins(2), "the preview's build", || async {
        builds(&daemon, &preview)
            .await
            .into_iter()
            .find(|b| b.commit == feature && !matches!(b.status.as_str(), "queued" | "running"))
    })
    .await;
    assert_eq!(built.status, "succeeded", "{built:#?}");
    assert_eq!(built.service, "web");
    let running = engine.list_containers(false).await.unwrap();
    assert!(
        running
            .iter()
            .any(|c| capstan_testkit::replica_of(c, &preview)),
        "the preview runs"
    );
    assert_eq!(served(port).await, "v4\n", "the app is untouched");
    eventually(
        Duration::from_mins(1),
        "the preview removed when its time is up",
        || async {
            let running = engine.list_containers(true).await.unwrap();
            (!running
                .iter()
                .any(|c| capstan_testkit::replica_of(c, &preview)))
            .then_some(())
        },
    )
    .await;
    let mut pr: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(
                &std::env::var("CARGO_MANIFEST_DIR")
                    .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
            )
            .join("../../crates/pipeline/fixtures/github-pull-request.json"),
        )
        .unwrap(),
    )
    .unwrap();
    pr["pull_request"]["head"]["sha"] = feature.clone().into();
    let body = pr.to_string();
    let signature =
        capstan_pipeline::signature::sign_hex(hook["secret"].as_str().unwrap(), body.as_bytes());
    let answer: serde_json::Value = reqwest::Client::new()
        .post(hook["url"].as_str().unwrap())
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", unique("pr"))
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "skipped", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("fork"),
        "{answer}"
    );

    // the scan gate: an image with a HIGH finding from the imported advisories is stopped
    // before its push, with the findings in its record
    let debian = capstan_testkit::debian_image(&engine).await;
    let osv = tempfile::tempdir().unwrap();
    std::fs::write(
        osv.path().join("gate.json"),
        serde_json::json!({
            "id": "TEST-GATE",
            "modified": "2026-12-01T00:00:00Z",
            "summary": "a test advisory the gate stops",
            "affected": [{
                "package": {"ecosystem": "Debian:12", "name": "dpkg"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99:0"}]}],
            }],
            "database_specific": {"severity": "HIGH"},
        })
        .to_string(),
    )
    .unwrap();
    let (code, _, err) = daemon
        .cli(&["vulndb", "import", osv.path().to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = daemon
        .cli(&[
            "hooks",
            &app,
            "--repository",
            &repo.url,
            "--fail-on",
            "high",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let debian_base = format!("{}/capt/{app}-debian:12", capstan_testkit::registry());
    engine.tag(&debian.reference, &debian_base).await.unwrap();
    engine.push(&debian_base, None).await.unwrap();
    let on_debian =
        format!("FROM {debian_base}\nCOPY index.html /index.html\nCMD [\"sleep\", \"3600\"]\n");
    let v6 = repo.push(
        "on debian",
        &[("Dockerfile", &on_debian), ("index.html", "v6\n")],
    );
    let gated = ended(&daemon, &app, &v6).await;
    assert_eq!(gated.status, "failed", "{gated:#?}");
    assert!(
        gated.error.contains("stopped before push"),
        "{}",
        gated.error
    );
    assert_eq!(
        gated.detail["findings"][0]["advisory"], "TEST-GATE",
        "{gated:#?}"
    );
    assert!(gated.digest.is_empty());
    let manifest = reqwest::Client::new()
        .get(format!(
            "http://{}/v2/capt/{app}/manifests/{}",
            capstan_testkit::registry(),
            &v6[..12]
        ))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 404, "nothing pushed");
    let gated_releases: Vec<Release> = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    assert_eq!(gated_releases.len(), releases.len(), "nothing deployed");
    assert_eq!(served(port).await, "v4\n");

    // the superseded v3 wanted after all: run again from its page, it is built, pushed and
    // deployed as a new build that names the one it retries
    crate::dashboard::goto(&client, &daemon, &format!("#/builds/{}", third.id)).await;
    crate::dashboard::wait_text(&client, "#build-status", "superseded").await;
    // (a hidden button has no text: shown once the page knows the build ended)
    crate::dashboard::wait_text(&client, "#build-retry", "again").await;
    client
        .find(fantoccini::Locator::Css("#build-retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    crate::dashboard::wait_text(&client, "#main", &format!("build {} again", third.id)).await;
    crate::dashboard::wait_text(&client, "#build-status", "succeeded").await;
    let again = builds(&daemon, &app)
        .await
        .into_iter()
        .find(|b| b.detail["retry_of"] == third.id)
        .unwrap_or_else(|| panic!("no retry of build {}", third.id));
    assert_eq!(
        (again.status.as_str(), again.commit.as_str()),
        ("succeeded", v3.as_str()),
        "{again:#?}"
    );
    // who asked: the token the browser signed in with, as the ledger names the hand deploy
    let by_hand = &releases.last().unwrap().actor;
    assert_eq!(again.detail["by"], by_hand.as_str(), "{again:#?}");
    assert_eq!(served(port).await, "v3\n");

    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}

/// With `builder = "classic"`, the engine's classic builder builds: a base image that exists
/// only in the engine's own store works (BuildKit would look for it in a registry), the
/// record says `classic`, the log has the builder's own steps, and a failing step is named
/// as the classic builder numbers it.
#[tokio::test]
async fn the_classic_builder_builds_from_a_local_base_and_names_its_failed_step() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncontainers = [\"capt-none-*\"]\n\n[pipeline]\nbuilder = \"classic\"\n",
    )
    .await;
    let repo = GitServer::start("classic").await;
    let app = unique("pipe-classic");
    let port = free_port();
    let image = format!("{}/capt/{app}", capstan_testkit::registry());
    // capstan-test/busybox:1 is made by the engine's import API: in no registry
    let dockerfile = DOCKERFILE.replace("BASE", capstan_testkit::BUSYBOX);
    repo.push(
        "first",
        &[
            ("Dockerfile", &dockerfile),
            ("index.html", "c1\n"),
            ("compose.yaml", &compose(&image, port, &repo.url)),
        ],
    );
    let (code, out, err) = daemon
        .cli_in(&repo.work(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = daemon.cli(&["hooks", &app, "-o", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let hook: serde_json::Value = serde_json::from_str(&out).unwrap();
    repo.hook(
        hook["url"].as_str().unwrap(),
        hook["secret"].as_str().unwrap(),
    );

    let c2 = repo.push("serve c2", &[("index.html", "c2\n")]);
    let built = ended(&daemon, &app, &c2).await;
    assert_eq!(built.status, "succeeded", "{built:#?}");
    assert_eq!(built.builder, "classic");
    assert!(built.digest.starts_with("sha256:"), "{built:#?}");
    assert_eq!(served(port).await, "c2\n");
    let (code, out, err) = daemon.cli(&["builds", "logs", &built.id.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("COPY index.html /www/index.html") && l.contains("Step 3/")),
        "{out}"
    );

    let broken = dockerfile.replace(
        "COPY index.html /www/index.html",
        "RUN echo about to fail && exit 4",
    );
    let c3 = repo.push("broken", &[("Dockerfile", &broken)]);
    let failed = ended(&daemon, &app, &c3).await;
    assert_eq!(failed.status, "failed", "{failed:#?}");
    assert_eq!(failed.builder, "classic");
    let at = failed.detail["failed_at"].as_str().unwrap_or_default();
    assert!(
        at.starts_with("Step 3/") && at.ends_with("RUN echo about to fail && exit 4"),
        "{failed:#?}"
    );
    assert_eq!(failed.release, None);
    assert_eq!(served(port).await, "c2\n", "nothing deployed");

    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}
