//! capstan's Debian package, built by `scripts/package-deb` with cargo-deb from the binary
//! under test, installed with `dpkg -i` into a Debian root made with debootstrap (a chroot):
//! the binary runs there and names its commit, the default config and the agent's token file
//! land with their modes and as conffiles, `capstan.service` is enabled and the agent's unit is
//! not, and `systemd-analyze verify` accepts both units. No systemd runs in this machine's
//! containers, so a unit's start is not tested here; what the daemon's unit promises (the proxy
//! outlives a restart of the daemon: `KillMode=process`, which sends SIGTERM to the daemon's
//! process only) is what `proxy::rollouts_failed_releases_and_daemon_restarts_drop_no_request`
//! does to the daemon; the unit's kill mode is checked below.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::bin;

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], root: Option<&Path>) -> Output {
    let mut cmd = match root {
        Some(root) => {
            let mut c = tokio::process::Command::new("chroot");
            c.arg(root).arg(program.as_ref());
            c
        }
        None => tokio::process::Command::new(program.as_ref()),
    };
    cmd.args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd.output().await.unwrap()
}

/// The .deb of the binary under test.
async fn package(out: &Path) -> PathBuf {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // the target dir the binary was built in (…/debug/capstan)
    let target = bin().parent().unwrap().parent().unwrap().to_owned();
    let made = tokio::process::Command::new(manifest.join("../../scripts/package-deb"))
        .args(["--debug", "--output"])
        .arg(out)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .await
        .unwrap();
    assert!(
        made.status.success(),
        "scripts/package-deb: {}",
        said(&made)
    );
    let stdout = String::from_utf8_lossy(&made.stdout);
    let Some(named) = stdout
        .lines()
        .rev()
        .find(|l| Path::new(l).extension().is_some_and(|e| e == "deb"))
    else {
        panic!("no .deb named in {}", said(&made));
    };
    let path = PathBuf::from(named);
    assert!(path.exists(), "{}", path.display());
    path
}

#[tokio::test]
async fn the_deb_installs_into_a_debian_root_runs_there_and_its_units_verify() {
    let work = tempfile::Builder::new()
        .prefix("capstan-deb-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let deb = package(&work.path().join("out")).await;
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    capstan_testkit::debian_root(&root).await;
    std::fs::copy(&deb, root.join("tmp/capstan.deb")).unwrap();
    // minbase has neither systemd nor Debian's init-system-helpers, which every system with
    // systemd has: the package's scripts enable its unit through the latter's
    // deb-systemd-helper (Perl), taken from this machine's
    for helper in ["deb-systemd-helper", "deb-systemd-invoke"] {
        std::fs::copy(
            Path::new("/usr/bin").join(helper),
            root.join("usr/bin").join(helper),
        )
        .unwrap();
    }

    let installed = run("dpkg", &["-i", "/tmp/capstan.deb"], Some(&root)).await;
    assert!(installed.status.success(), "dpkg -i: {}", said(&installed));
    let status = run(
        "dpkg-query",
        &["-W", "-f=${Status} ${Version}", "capstan"],
        Some(&root),
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "install ok installed 0.1.0-1",
        "{}",
        said(&status)
    );

    // the binary runs in the Debian root and names the commit, as the one under test does
    let there = run("capstan", &["--version"], Some(&root)).await;
    let here = run(bin(), &["--version"], None).await;
    assert!(there.status.success(), "{}", said(&there));
    assert_eq!(said(&there), said(&here));
    assert!(
        said(&there).starts_with("capstan 0.1.0 ("),
        "{}",
        said(&there)
    );

    // files, modes, conffiles
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        mode("etc/capstan/agent.env"),
        0o600,
        "the join token's file is root's only"
    );
    assert_eq!(mode("etc/capstan/capstan.toml"), 0o644);
    assert_eq!(mode("usr/bin/capstan"), 0o755);
    let conffiles =
        std::fs::read_to_string(root.join("var/lib/dpkg/info/capstan.conffiles")).unwrap();
    for f in ["/etc/capstan/capstan.toml", "/etc/capstan/agent.env"] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} is no conffile: {conffiles}"
        );
    }
    assert!(root.join("usr/share/doc/capstan/install.md").exists());
    // the daemon is enabled at boot, the agent is not (it needs a hub and a token first)
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    // (links to the root's own path: read as links, not followed on this machine)
    let enabled = |unit: &str| std::fs::symlink_metadata(wants.join(unit)).is_ok();
    assert!(
        enabled("capstan.service"),
        "capstan.service is not enabled: {}",
        said(&installed)
    );
    assert!(!enabled("capstan-agent.service"));
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/capstan.service")).unwrap();
    assert!(
        unit.lines().any(|l| l == "KillMode=process"),
        "a restart of the daemon must leave the proxy's process alone: {unit}"
    );

    // systemd-analyze verify, with the root's units: minbase has no systemd, so the units
    // systemd itself ships (the targets ours name) come from this machine's systemd, the same
    // systemd that verifies
    let units = root.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        let to = units.join(entry.file_name());
        if !to.exists() && entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
    let root_arg = format!("--root={}", root.display());
    let verified = run(
        "systemd-analyze",
        &[
            "verify",
            &root_arg,
            "capstan.service",
            "capstan-agent.service",
        ],
        None,
    )
    .await;
    assert!(
        verified.status.success() && said(&verified).trim().is_empty(),
        "systemd-analyze verify: {}",
        said(&verified)
    );
    // …and it reads them: a unit with a misspelt key is reported
    std::fs::write(
        units.join("capstan-misspelt.service"),
        unit.replace("KillMode=process", "KillMod=process"),
    )
    .unwrap();
    let misspelt = run(
        "systemd-analyze",
        &["verify", &root_arg, "capstan-misspelt.service"],
        None,
    )
    .await;
    assert!(
        said(&misspelt).contains("Unknown key"),
        "{}",
        said(&misspelt)
    );

    // removed: the prerm stops the proxy (none runs here) and the package goes; the edited
    // config stays until a purge
    std::fs::write(
        root.join("etc/capstan/capstan.toml"),
        "listen = \"127.0.0.1:7979\"\n",
    )
    .unwrap();
    let removed = run("dpkg", &["-r", "capstan"], Some(&root)).await;
    assert!(removed.status.success(), "dpkg -r: {}", said(&removed));
    assert!(!root.join("usr/bin/capstan").exists());
    assert!(root.join("etc/capstan/capstan.toml").exists());
    let purged = run("dpkg", &["-P", "capstan"], Some(&root)).await;
    assert!(purged.status.success(), "dpkg -P: {}", said(&purged));
    assert!(!root.join("etc/capstan/capstan.toml").exists());
}
