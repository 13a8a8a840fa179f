//! Secrets at rest against the real engine: sealed in the data dir, in plain text only on a
//! tmpfs the container mounts, put back from the sealed copy when the tmpfs is gone, and a
//! daemon whose key file was replaced refuses to start.

use std::path::Path;
use std::time::Duration;

use capstan_testkit::{Daemon, eventually, unique};
use tokio::process::Command;

use crate::bin;

/// Whether a file under `dir` holds `needle`.
fn found_under(dir: &Path, needle: &[u8]) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            if let Some(hit) = found_under(&path, needle) {
                return Some(hit);
            }
        } else if kind.is_file()
            && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            return Some(path);
        }
    }
    None
}

/// The file system type of the mount that holds `path` (the longest mount point above it).
fn fs_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            Some((point.to_owned(), kind.to_owned()))
        })
        .filter(|(point, _)| path.starts_with(point))
        .max_by_key(|(point, _)| point.len())
        .map(|(_, kind)| kind)
        .unwrap_or_default()
}

/// The SHA-256 of `text` in hex, as `sha256sum` prints it.
fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The SHA-256 a replica printed of its secret file, once it has.
async fn printed_digest(engine: &capstan_engine::Engine, app: &str) -> String {
    eventually(
        Duration::from_mins(1),
        "a replica's digest of its secret",
        || async {
            let c = engine
                .list_containers(false)
                .await
                .ok()?
                .into_iter()
                .find(|c| capstan_testkit::replica_of(c, app))?;
            let logs = engine.tail_logs(&c.id, 5).await.ok()?;
            logs.split_whitespace()
                .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
                .map(str::to_owned)
        },
    )
    .await
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_in_plain_text_only_on_tmpfs() {
    let engine = capstan_testkit::engine().await;
    let mut daemon = Daemon::start(bin(), engine.host()).await;
    let app = unique("capt-secret");
    let value = format!("s3cr3t-{app}");
    let digest = sha256_hex(&value);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api_key.txt"), &value).unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: capstan-test/busybox:1\n    init: true\n    command: [\"sh\", \"-c\", \"sha256sum /run/secrets/api_key; exec sleep 3600\"]\n    secrets: [api_key]\nsecrets:\n  api_key:\n    file: ./api_key.txt\n",
    )
    .unwrap();
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        printed_digest(&engine, &app).await,
        digest,
        "the replica read another value"
    );

    // nowhere in the data dir in plain text; the container mounts it from a tmpfs
    assert_eq!(found_under(daemon.data_dir(), value.as_bytes()), None);
    let id = engine
        .list_containers(false)
        .await
        .unwrap()
        .into_iter()
        .find(|c| capstan_testkit::replica_of(c, &app))
        .unwrap()
        .id;
    let inspect = engine.inspect_container_json(&id).await.unwrap();
    let source = inspect["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/run/secrets/api_key")
        .and_then(|m| m["Source"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(fs_type(Path::new(&source)), "tmpfs", "{source}");
    assert!(!Path::new(&source).starts_with(daemon.data_dir()));

    // the tmpfs gone (as after a reboot): the daemon mounts a new one, and a replica made
    // anew gets its secret from the sealed copy
    daemon.stop().await;
    let tmpfs = Path::new(&source).ancestors().nth(3).unwrap().to_owned();
    let status = Command::new("umount")
        .arg("-l")
        .arg(&tmpfs)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "umount {}", tmpfs.display());
    daemon.restart().await;
    engine.remove_container(&id, true).await.unwrap();
    let healed = eventually(Duration::from_secs(90), "the replica healed", || async {
        engine
            .list_containers(false)
            .await
            .ok()?
            .into_iter()
            .find(|c| capstan_testkit::replica_of(c, &app) && c.id != id)
    })
    .await;
    assert_eq!(printed_digest(&engine, &app).await, digest);
    assert_eq!(fs_type(&tmpfs), "tmpfs", "no tmpfs after the restart");
    drop(healed);

    // a new value in release 2; a rollback to release 1 brings back release 1's value, read
    // from its sealed version (never shown: the releases carry no digest of it either)
    std::fs::write(dir.path().join("api_key.txt"), format!("{value}-2")).unwrap();
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = daemon.cli(&["rollback", &app, "--to", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        printed_digest(&engine, &app).await,
        digest,
        "release 1's secret is back"
    );
    let (code, releases, _) = daemon.cli(&["releases", &app, "-o", "json"]).await;
    assert_eq!(code, 0);
    assert!(!releases.contains("digests"), "{releases}");

    // new keys: refused under the running daemon; once it is stopped, every value (each
    // version too) is sealed again, and release 2's comes back under the new keys
    let data = daemon.data_dir().to_owned();
    let rotate = || async {
        Command::new(bin())
            .args(["secrets", "rotate-key", "--data"])
            .arg(&data)
            .output()
            .await
            .unwrap()
    };
    let out = rotate().await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.stop().await;
    let old_key = std::fs::read(daemon.data_dir().join("vault.key")).unwrap();
    let out = rotate().await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("sealed again under new keys"), "{said}");
    assert_ne!(
        std::fs::read(daemon.data_dir().join("vault.key")).unwrap(),
        old_key
    );
    daemon.restart().await;
    let second = sha256_hex(&format!("{value}-2"));
    let (code, out, err) = daemon.cli(&["rollback", &app, "--to", "2"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        printed_digest(&engine, &app).await,
        second,
        "release 2's secret"
    );
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");

    // a replaced key file: the daemon refuses to start, and says what to do
    daemon.stop().await;
    std::fs::write(daemon.data_dir().join("vault.key"), [7_u8; 32]).unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--docker-host",
            engine.host(),
        ])
        .arg("--data")
        .arg(daemon.data_dir())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not open") && err.contains("put back the key file"),
        "{err}"
    );
}

#[tokio::test]
async fn an_inline_secret_is_kept_by_name_and_digest_and_comes_back_from_the_vault() {
    let engine = capstan_testkit::engine().await;
    let mut daemon = Daemon::start(bin(), engine.host()).await;
    let app = unique("capt-inline");
    let value = format!("inl1ne-{app}");
    let dir = tempfile::tempdir().unwrap();
    let compose = |marker: &str| {
        format!(
            "services:\n  web:\n    image: capstan-test/busybox:1\n    init: true\n    environment:\n      MARK: \"{marker}\"\n    command: [\"sh\", \"-c\", \"sha256sum /run/secrets/key; exec sleep 3600\"]\n    secrets: [key]\nsecrets:\n  key:\n    content: \"{value}\"\n"
        )
    };
    std::fs::write(dir.path().join("compose.yaml"), compose("1")).unwrap();
    let (code, out, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(printed_digest(&engine, &app).await, sha256_hex(&value));

    // the API shows a placeholder where the value was written
    let releases: serde_json::Value = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    let shown = releases[0]["model"].clone();
    let placeholder = shown["secrets"]["key"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(placeholder.starts_with("<redacted:"), "{shown}");
    assert!(!releases.to_string().contains(&value));

    // the dashboard's edit: the shown model, one value changed, posted back as it is; the
    // secret comes from the vault at the version the running release ran
    let mut edited = shown.clone();
    edited["services"]["web"]["environment"]["MARK"] = "2".into();
    let (status, report) = daemon
        .post_text(
            &format!("/api/v1/apps/{app}/deploy"),
            "application/yaml",
            edited.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    let second: serde_json::Value = daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    assert_eq!(second[0]["number"], 2, "{second}");
    assert_eq!(
        second[0]["model"]["secrets"]["key"]["content"],
        placeholder.as_str()
    );

    // a rollback to release 1 reads it back from the vault too
    let (code, out, err) = daemon.cli(&["rollback", &app, "--to", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(printed_digest(&engine, &app).await, sha256_hex(&value));

    // a placeholder of a value the running release does not have is refused, naming the key
    let mut forged = shown;
    forged["secrets"]["key"]["content"] = "<redacted:000000000000>".into();
    let (status, body) = daemon
        .post_text(
            &format!("/api/v1/apps/{app}/plan"),
            "application/yaml",
            forged.to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("secrets.key.content"), "{body}");

    // a ledger an older capstan wrote, release 1 holding the value in plain text and no
    // digest: the next start seals it, and a rollback to it still brings the value back
    daemon.stop().await;
    let store = capstan_store::Store::open(&daemon.data_dir().join("state.db")).unwrap();
    let row = store.release(app.clone(), 1).await.unwrap().unwrap();
    let mut model: serde_json::Value = serde_json::from_str(&row.model).unwrap();
    model["secrets"]["key"]["content"] = value.clone().into();
    let mut source: serde_json::Value = serde_json::from_str(&row.source).unwrap();
    source.as_object_mut().unwrap().remove("digests");
    store
        .rewrite_release(app.clone(), 1, model.to_string(), source.to_string())
        .await
        .unwrap();
    daemon.restart().await;
    eventually(
        Duration::from_secs(30),
        "release 1 sealed again",
        || async {
            let row = store.release(app.clone(), 1).await.ok()??;
            (!row.model.contains(&value) && row.source.contains("secrets/key")).then_some(())
        },
    )
    .await;
    drop(store);
    let (code, out, err) = daemon.cli(&["rollback", &app, "--to", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");

    // in plain text nowhere in the data dir (the ledger's database and its log included), nor
    // in the daemon's log
    assert_eq!(found_under(daemon.data_dir(), value.as_bytes()), None);
    assert!(!daemon.log().contains(&value));
    let (code, _, err) = daemon.cli(&["down", &app]).await;
    assert_eq!(code, 0, "{err}");
}
