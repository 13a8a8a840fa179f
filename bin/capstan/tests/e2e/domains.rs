//! Host names with automatic HTTPS, against a real ACME server: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS (every name is 127.0.0.1), validating HTTP-01 and
//! TLS-ALPN-01 on the proxy's shared ports. Clients trust pebble's root alone, so every HTTPS
//! answer checks the chain the proxy serves.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capstan_testkit::{Daemon, Pebble, eventually, free_port, unique};

use crate::bin;

/// Two replicas of a busybox httpd answering `/` with `$VERSION` and `/ping` with `pong`,
/// health-gated, start-first; `routes` is the app's `x-capstan.routes`.
fn app(version: &str, routes: &str) -> String {
    format!(
        r#"x-capstan:
  routes:
{routes}
services:
  web:
    image: capstan-test/busybox:1
    init: true
    command: ["sh", "-c", "mkdir -p /www && echo $$VERSION > /www/index.html && echo pong > /www/ping && exec httpd -f -p 80 -h /www"]
    environment:
      VERSION: {version}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      retries: 3
    stop_grace_period: 5s
    deploy:
      replicas: 2
      update_config:
        order: start-first
"#
    )
}

const SHOP_ROUTES: &str = "    - host: shop.example.com
    - host: www.shop.example.com
    - {host: shop.example.com, path: /api, strip_prefix: true}
    - {host: admin.example.com, challenge: tls-alpn-01}
    - host: files.example.com
";

async fn deploy(
    daemon: &Daemon,
    dir: &std::path::Path,
    name: &str,
    compose: &str,
) -> (i32, String) {
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let (code, out, err) = daemon.cli_in(dir, &["deploy", "-p", name], &[]).await;
    (code, format!("{out}{err}"))
}

/// An HTTPS client trusting `roots` alone, every test name at `https`.
fn client(roots: &[&str], https: u16) -> reqwest::Client {
    let at: std::net::SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .tls_certs_only(
            roots
                .iter()
                .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()),
        );
    for name in [
        "shop.example.com",
        "www.shop.example.com",
        "admin.example.com",
        "files.example.com",
        "nowhere.example.com",
    ] {
        b = b.resolve(name, at);
    }
    b.build().unwrap()
}

/// (status, body, version, the served leaf certificate) of a GET.
async fn get(client: &reqwest::Client, url: &str) -> (u16, String, reqwest::Version, Vec<u8>) {
    let resp = client.get(url).send().await.unwrap();
    let leaf = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let (status, version) = (resp.status().as_u16(), resp.version());
    (
        status,
        resp.text().await.unwrap().trim().to_owned(),
        version,
        leaf,
    )
}

/// A plain-HTTP GET of `path` for `host` on the shared HTTP port: (status, Location, body).
async fn plain(http: u16, host: &str, path: &str) -> (u16, String, String) {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{http}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status().as_u16(), location, resp.text().await.unwrap())
}

async fn certificate_events(daemon: &Daemon, action: &str, app: &str) -> Vec<capstan_model::Event> {
    daemon
        .all_events(&format!("type=capstan&action={action}"))
        .await
        .into_iter()
        .filter(|e| e.attributes.get("app").map(String::as_str) == Some(app))
        .collect()
}

#[tokio::test]
async fn host_names_get_certificates_from_acme_served_over_http2_through_a_rollout_and_renewed() {
    let engine = capstan_testkit::engine().await;
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, &["blocked.example.com"]).await;
    // a certificate given as files, for a name ACME is never asked about
    let files = tempfile::tempdir().unwrap();
    let own = rcgen::generate_simple_self_signed(vec!["files.example.com".to_owned()]).unwrap();
    std::fs::write(files.path().join("cert.pem"), own.cert.pem()).unwrap();
    std::fs::write(files.path().join("key.pem"), own.key_pair.serialize_pem()).unwrap();
    let config = |renew_before: &str| {
        format!(
            "[proxy]\nhttp = \"127.0.0.1:{http}\"\nhttps = \"127.0.0.1:{https}\"\n\
             [[proxy.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [acme]\ndirectory = \"{}\"\nca_file = \"{}\"\nrenew_before = \"{renew_before}\"\n\
             [alerts]\ndefaults = true\nevaluate_every = \"1s\"\n[logs]\ncollect = false\n",
            files.path().join("cert.pem").display(),
            files.path().join("key.pem").display(),
            pebble.directory,
            pebble.ca_file().display(),
        )
    };
    let mut daemon = Daemon::start_with(bin(), engine.host(), &config("30d")).await;
    let dir = tempfile::tempdir().unwrap();
    let shop = unique("capt-shop");

    let (code, out) = deploy(&daemon, dir.path(), &shop, &app("v1", SHOP_ROUTES)).await;
    assert_eq!(code, 0, "{out}");
    // one certificate per challenge: shop and www over HTTP-01, admin over TLS-ALPN-01
    let issued = eventually(
        Duration::from_secs(90),
        "both certificates issued",
        || async {
            let issued = certificate_events(&daemon, "certificate_issued", &shop).await;
            (issued.len() >= 2).then_some(issued)
        },
    )
    .await;
    let by_challenge: BTreeMap<&str, &str> = issued
        .iter()
        .map(|e| {
            (
                e.attributes["challenge"].as_str(),
                e.attributes["names"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        by_challenge,
        BTreeMap::from([
            ("http-01", "shop.example.com,www.shop.example.com"),
            ("tls-alpn-01", "admin.example.com"),
        ]),
        "{}",
        pebble.log()
    );
    let root = pebble.root().await;
    let acme = client(&[&root], https);
    // issued, then handed to the proxy: served a moment later
    let (status, body, version, shop_leaf) = eventually(
        Duration::from_secs(15),
        "the certificate served",
        || async {
            acme.get(format!("https://shop.example.com:{https}/"))
                .send()
                .await
                .is_ok()
                .then_some(())?;
            Some(get(&acme, &format!("https://shop.example.com:{https}/")).await)
        },
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "v1"));
    assert_eq!(version, reqwest::Version::HTTP_2, "HTTP/2 to clients");
    for (url, expected) in [
        (format!("https://www.shop.example.com:{https}/"), "v1"),
        (format!("https://admin.example.com:{https}/"), "v1"),
        // the prefix is cut off on the way
        (format!("https://shop.example.com:{https}/api/ping"), "pong"),
    ] {
        // (each certificate reaches the proxy a moment after it is journaled)
        eventually(Duration::from_secs(15), &url, || async {
            let resp = acme.get(&url).send().await.ok()?;
            let body = resp.text().await.ok()?;
            (body.trim() == expected).then_some(())
        })
        .await;
    }
    // the name a file covers is served with the file's certificate
    let (status, body, _, _) = get(
        &client(&[&own.cert.pem()], https),
        &format!("https://files.example.com:{https}/"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "v1"));
    // `capstan ps` names each replica's host names, with the scheme they are served on
    let (code, ps, err) = daemon.cli(&["ps", &shop]).await;
    assert_eq!(code, 0, "{err}");
    for shown in [
        "https://shop.example.com/->80",
        "https://shop.example.com/api->80",
        "https://admin.example.com/->80",
    ] {
        assert_eq!(
            ps.matches(shown).count(),
            2,
            "{shown} on both replicas:\n{ps}"
        );
    }
    // kept for the owner alone
    let kept = daemon
        .data_dir()
        .join("certs")
        .join(format!("{shop}.http-01"));
    for file in ["cert.pem", "key.pem"] {
        let mode = std::fs::metadata(kept.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    // plain HTTP redirects, path and query kept; a name nothing serves is a 404 that names
    // nothing that is served
    let (status, location, _) = plain(http, "shop.example.com", "/cart?id=2").await;
    assert_eq!(status, 308);
    assert_eq!(
        location,
        format!("https://shop.example.com:{https}/cart?id=2")
    );
    let (status, _, body) = plain(http, "nowhere.example.com", "/").await;
    assert_eq!(status, 404);
    assert!(!body.contains("shop") && !body.contains(&shop), "{body}");

    // a rollout under HTTPS load: nothing fails
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (acme, done) = (acme.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut seen: BTreeMap<String, u64> = BTreeMap::new();
                let mut failed = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    match acme
                        .get(format!("https://shop.example.com:{https}/"))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            *seen
                                .entry(r.text().await.unwrap_or_default().trim().to_owned())
                                .or_default() += 1;
                        }
                        Ok(r) => failed.push(format!("status {}", r.status())),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (seen, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out) = deploy(&daemon, dir.path(), &shop, &app("v2", SHOP_ROUTES)).await;
    assert_eq!(code, 0, "{out}");
    let mut served = 0;
    while served < 2000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status: serde_json::Value = daemon.get("/api/v1/proxy").await;
        served = status["proxy"]["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["key"].as_str().unwrap().ends_with("/shop.example.com/"))
            .map(|s| s["connections"].as_u64().unwrap())
            .sum::<u64>();
    }
    done.store(true, Ordering::Relaxed);
    let mut bodies: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for w in workers {
        let (seen, failed) = w.await.unwrap();
        for (b, n) in seen {
            *bodies.entry(b).or_default() += n;
        }
        failures.extend(failed);
    }
    let total: u64 = bodies.values().sum();
    eprintln!(
        "HTTPS through the rollout: {total} requests, {} failed, {bodies:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total >= 2000, "{total}");
    assert!(bodies.contains_key("v2"), "{bodies:?}");
    assert!(bodies.keys().all(|b| b == "v1" || b == "v2"), "{bodies:?}");

    // another app cannot take a routed name: refused before anything changes
    let thief = unique("capt-thief");
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &thief,
        &app("x", "    - host: shop.example.com\n"),
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("shop.example.com is already routed to app"),
        "{out}"
    );
    let (code, _, _) = daemon.cli(&["releases", &thief]).await;
    assert_ne!(code, 0, "no release of the refused app");
    assert_eq!(
        get(&acme, &format!("https://shop.example.com:{https}/"))
            .await
            .1,
        "v2"
    );

    // a name the ACME server refuses: served over plain HTTP, with an event and an alert
    let blocked = unique("capt-blocked");
    let (code, out) = deploy(
        &daemon,
        dir.path(),
        &blocked,
        &app("b1", "    - host: blocked.example.com\n"),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let failed = eventually(Duration::from_mins(1), "the refusal journaled", || async {
        certificate_events(&daemon, "certificate_failed", &blocked)
            .await
            .pop()
    })
    .await;
    assert!(
        failed.attributes["error"].contains("blocked.example.com"),
        "{failed:?}"
    );
    eventually(
        Duration::from_secs(30),
        "the certificate_failed alert",
        || async {
            let list: capstan_model::AlertList = daemon.get("/api/v1/alerts").await;
            list.alerts.into_iter().find(|a| {
                a.rule == "certificate_failed"
                    && a.state == capstan_model::AlertState::Firing
                    && a.labels.get("app") == Some(&blocked)
            })
        },
    )
    .await;
    let (status, _, body) = plain(http, "blocked.example.com", "/").await;
    assert_eq!(
        (status, body.trim()),
        (200, "b1"),
        "no redirect without a certificate"
    );

    // renewal, forced by renew_before: a new certificate is served, its key kept 0600
    assert_eq!(daemon.stop().await.code(), Some(0));
    daemon.set_config(&config("100000d"));
    daemon.restart().await;
    eventually(Duration::from_secs(90), "the renewal", || async {
        certificate_events(&daemon, "certificate_issued", &shop)
            .await
            .into_iter()
            .find(|e| {
                e.attributes.get("renewal").map(String::as_str) == Some("true")
                    && e.attributes["challenge"] == "http-01"
            })
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the renewed certificate served",
        || async {
            // a new connection (a kept one shows the certificate of its handshake)
            let fresh = client(&[&root], https);
            let (status, _, _, leaf) =
                get(&fresh, &format!("https://shop.example.com:{https}/")).await;
            (status == 200 && !leaf.is_empty() && leaf != shop_leaf).then_some(())
        },
    )
    .await;

    for name in [&shop, &blocked] {
        let (code, _, err) = daemon.cli(&["down", name]).await;
        assert_eq!(code, 0, "{err}");
    }
}
