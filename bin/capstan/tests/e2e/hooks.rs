//! Git webhooks against the real daemon: one correctly signed delivery per provider (GitHub,
//! Gitea, Forgejo, GitLab's token and signed forms, the generic HMAC), each built from the
//! provider's documented payload format, is taken and decided against the app's source; the
//! same with one byte changed is refused; and the bad input a receiver open to the world
//! meets is refused whole (a missing signature, a replayed delivery id, another branch, an
//! oversized body, an unknown app), each delivery listed with what came of it.

use capstan_pipeline::signature::{sign_hex, sign_standard};
use capstan_testkit::{Daemon, unique};

use crate::bin;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("../../crates/pipeline/fixtures")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Posts a delivery; its status and JSON answer.
async fn deliver(
    daemon: &Daemon,
    app: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!("{}/api/v1/hooks/git/{app}", daemon.url));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// A provider, the headers it sends, the body, and what the delivery comes to.
type Case = (
    &'static str,
    Vec<(&'static str, String)>,
    Vec<u8>,
    &'static str,
);

fn flip(body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let i = b.len() / 2;
    b[i] ^= 0x20;
    b
}

#[tokio::test]
async fn git_hooks_take_each_provider_signed_and_refuse_bad_input_whole() {
    let daemon = Daemon::start(bin(), &capstan_testkit::docker_host()).await;
    let app = unique("hooked");
    // the app's source: pushes to main that touch web/ or the Dockerfile
    let (code, out, err) = daemon
        .cli(&[
            "hooks",
            &app,
            "--repository",
            "http://127.0.0.1:9/shop.git",
            "--path",
            "web",
            "--path",
            "Dockerfile",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = shown["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        shown["url"],
        format!("{}/api/v1/hooks/git/{app}", daemon.url)
    );
    // shown once: asked again, it is not
    let (code, out, _) = daemon.cli(&["hooks", &app, "-o", "json"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains(&secret), "{out}");

    let hex = |body: &[u8]| sign_hex(&secret, body);
    let now = chrono::Utc::now().timestamp();
    let github = fixture("github-push.json");
    let gitea = fixture("gitea-push.json");
    let gitlab = fixture("gitlab-push.json");
    let cases: Vec<Case> = vec![
        (
            "github",
            vec![
                ("x-github-event", "push".into()),
                ("x-github-delivery", unique("gh")),
                ("x-hub-signature-256", format!("sha256={}", hex(&github))),
            ],
            github.clone(),
            "queued",
        ),
        (
            "gitea",
            vec![
                ("x-gitea-event", "push".into()),
                ("x-gitea-delivery", unique("gt")),
                ("x-gitea-signature", hex(&gitea)),
                ("x-hub-signature-256", format!("sha256={}", hex(&gitea))),
            ],
            gitea.clone(),
            "skipped",
        ),
        (
            "forgejo",
            vec![
                ("x-forgejo-event", "push".into()),
                ("x-forgejo-delivery", unique("fj")),
                ("x-forgejo-signature", hex(&github)),
            ],
            github.clone(),
            "queued",
        ),
        (
            "gitlab_token",
            vec![
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-event-uuid", unique("gl")),
                ("x-gitlab-token", secret.clone()),
            ],
            gitlab.clone(),
            "skipped",
        ),
        (
            "generic",
            vec![
                ("x-capstan-event", "push".into()),
                ("x-capstan-delivery", unique("gen")),
                ("x-capstan-signature", format!("sha256={}", hex(&github))),
            ],
            github.clone(),
            "queued",
        ),
    ];
    let signed_id = unique("msg");
    let mut cases = cases;
    cases.push((
        "gitlab_signed",
        vec![
            ("x-gitlab-event", "Push Hook".into()),
            ("webhook-id", signed_id.clone()),
            ("webhook-timestamp", now.to_string()),
            (
                "webhook-signature",
                sign_standard(&secret, &signed_id, now, &gitlab),
            ),
        ],
        gitlab.clone(),
        "skipped",
    ));
    for (provider, headers, body, want) in &cases {
        // one byte changed first (a refusal takes no delivery id), then as signed
        if *provider != "gitlab_token" {
            let (status, answer) = deliver(&daemon, &app, headers, flip(body)).await;
            assert_eq!(status, 401, "{provider} with a byte changed: {answer}");
        }
        let (status, answer) = deliver(&daemon, &app, headers, body.clone()).await;
        assert_eq!(answer["outcome"], *want, "{provider}: {answer}");
        assert_eq!(
            status,
            if *want == "queued" { 202 } else { 200 },
            "{provider}"
        );
        // sent again: a replay, ignored
        let (status, answer) = deliver(&daemon, &app, headers, body.clone()).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some("replay")),
            "{provider}"
        );
    }
    // a GitLab token that is not the secret
    let (status, _) = deliver(
        &daemon,
        &app,
        &[
            ("x-gitlab-event", "Push Hook".into()),
            ("x-gitlab-token", "whsec_guess".into()),
        ],
        gitlab.clone(),
    )
    .await;
    assert_eq!(status, 401);

    // no signature at all; a body too big to read; an app with no hook; a body that is no
    // provider's payload, signed
    let (status, answer) = deliver(&daemon, &app, &[], github.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no signature"),
        "{answer}"
    );
    let big = vec![b'{'; capstan_pipeline::MAX_BODY + 1];
    let sig = format!("sha256={}", hex(&big));
    let (status, _) = deliver(&daemon, &app, &[("x-hub-signature-256", sig)], big).await;
    assert_eq!(status, 413);
    let (status, answer) = deliver(
        &daemon,
        &unique("nohook"),
        &[("x-hub-signature-256", format!("sha256={}", hex(&github)))],
        github.clone(),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = deliver(
        &daemon,
        &app,
        &[
            ("x-github-event", "push".into()),
            ("x-hub-signature-256", format!("sha256={}", hex(b"[1, 2"))),
        ],
        b"[1, 2".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");

    // every delivery is listed with what came of it; the skipped ones say why
    let info: capstan_model::HookInfo = daemon.get(&format!("/api/v1/apps/{app}/hooks")).await;
    let outcomes = |o: &str| info.deliveries.iter().filter(|d| d.outcome == o).count();
    assert_eq!(outcomes("accepted"), 3, "{:#?}", info.deliveries);
    assert_eq!(outcomes("skipped"), 3, "{:#?}", info.deliveries);
    assert_eq!(outcomes("failed"), 1);
    // five bodies with a byte changed, a wrong token, no signature, and the oversized one was
    // never read
    assert_eq!(outcomes("refused"), 7, "{:#?}", info.deliveries);
    let reasons: Vec<&str> = info.deliveries.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons.contains(&"a push to develop, not to main"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("none of the watched paths")),
        "{reasons:?}"
    );
    let refused = info
        .deliveries
        .iter()
        .find(|d| d.outcome == "refused")
        .unwrap();
    assert!(
        refused.delivery.is_empty() && refused.commit.is_empty(),
        "{refused:?}"
    );
    let (code, out, err) = daemon.cli(&["hooks", &app]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a push to develop, not to main"), "{out}");
    assert!(
        out.contains("http://127.0.0.1:9/shop.git (branch main"),
        "{out}"
    );

    // a source whose settings do not hold is refused, naming the key; nothing changes
    let (code, _, err) = daemon
        .cli(&[
            "hooks",
            &app,
            "--repository",
            "http://x/y.git",
            "--credentials",
            "hunter2",
        ])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("vault:NAME"), "{err}");
    let info: capstan_model::HookInfo = daemon.get(&format!("/api/v1/apps/{app}/hooks")).await;
    assert_eq!(
        info.source.unwrap().repository,
        "http://127.0.0.1:9/shop.git"
    );

    // so is one a Compose file names (x-capstan.source): the deploy is refused before anything
    // runs, and nothing of it is kept
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "x-capstan:\n  source:\n    repository: http://x/y.git\n    credentials: hunter2\nservices:\n  web:\n    image: capstan-test/busybox:1\n",
    )
    .unwrap();
    let other = unique("badsrc");
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &other], &[])
        .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("x-capstan.source.credentials"), "{err}");
    let (status, _) = daemon
        .get_raw(
            &format!("/api/v1/apps/{other}/releases"),
            Some(&daemon.token),
        )
        .await;
    assert_eq!(status, 404);
    let info: capstan_model::HookInfo = daemon.get(&format!("/api/v1/apps/{other}/hooks")).await;
    assert!(info.source.is_none());
}
