//! Offline vulnerability scans through the daemon, of a real Debian image (debootstrap'd from
//! the mirror, imported through the engine). The advisories are an OSV file the test writes
//! from the image's own `dpkg/status`: fixed above the installed version (reported), at it or
//! below it (not), keyed by a source package whose binaries have other names (reported for
//! each binary), listed by exact version (reported, no fix), for another ecosystem (not).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::{ContainerFindings, ScanReport, Severity, VulnDbStatus};
use capstan_testkit::{Daemon, debian_image, eventually, registry, tar_of, unique};

use crate::bin;

/// `(package, version, source, source version)` of each installed package.
fn installed(status: &str) -> Vec<(String, String, String, String)> {
    status
        .split("\n\n")
        .filter(|p| p.contains("\nStatus: install ok installed"))
        .filter_map(|p| {
            let field = |k: &str| {
                p.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(": ").map(str::to_owned))
            };
            let (name, version) = (field("Package")?, field("Version")?);
            let (source, source_version) = match field("Source") {
                None => (name.clone(), version.clone()),
                Some(s) => match s.split_once(" (") {
                    Some((s, v)) => (s.to_owned(), v.trim_end_matches(')').to_owned()),
                    None => (s, version.clone()),
                },
            };
            Some((name, version, source, source_version))
        })
        .collect()
}

fn advisory(
    id: &str,
    ecosystem: &str,
    package: &str,
    affected: &serde_json::Value,
) -> serde_json::Value {
    let mut a = serde_json::json!({
        "id": id,
        "modified": "2026-12-01T00:00:00Z",
        "summary": format!("test advisory {id}"),
        "aliases": [format!("CVE-2026-{}", id.len())],
        "affected": [{"package": {"ecosystem": ecosystem, "name": package}}],
    });
    for (k, v) in affected.as_object().unwrap() {
        a["affected"][0][k] = v.clone();
    }
    a
}

fn fixed(version: &str) -> serde_json::Value {
    serde_json::json!({"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": version}]}]})
}

async fn scan(daemon: &Daemon, args: &[&str]) -> (i32, Option<ScanReport>, String) {
    let mut all = vec!["images", "scan"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    let (code, out, err) = daemon.cli(&all).await;
    (code, serde_json::from_str(&out).ok(), err)
}

fn found(report: &ScanReport) -> BTreeSet<(String, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.advisory.clone(), f.package.clone()))
        .collect()
}

#[tokio::test]
async fn a_debian_image_is_scanned_against_imported_advisories() {
    let engine = capstan_testkit::engine().await;
    let debian = debian_image(&engine).await;
    let packages = installed(&debian.dpkg_status);
    let by_name: BTreeMap<&str, &(String, String, String, String)> =
        packages.iter().map(|p| (p.0.as_str(), p)).collect();
    let version = |name: &str| by_name[name].1.clone();
    // glibc's binaries (libc6, libc-bin): none is called glibc
    let glibc: BTreeSet<String> = packages
        .iter()
        .filter(|p| p.2 == "glibc")
        .map(|p| p.0.clone())
        .collect();
    assert!(glibc.len() >= 2 && !glibc.contains("glibc"), "{glibc:?}");
    let glibc_version = by_name["libc6"].3.clone();
    let with = |mut a: serde_json::Value, key: &str, value: serde_json::Value| {
        a[key] = value;
        a
    };
    let advisories = serde_json::Value::Array(vec![
        // fixed above what is installed: reported, critical by its CVSS vector
        with(
            advisory(
                "TEST-ABOVE",
                "Debian:12",
                "bash",
                &fixed(&format!("{}+capstan1", version("bash"))),
            ),
            "severity",
            serde_json::json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]),
        ),
        // fixed at the installed version, and below it (~ sorts first): not reported
        advisory("TEST-AT", "Debian:12", "dpkg", &fixed(&version("dpkg"))),
        advisory(
            "TEST-BELOW",
            "Debian:12",
            "grep",
            &fixed(&format!("{}~", version("grep"))),
        ),
        // keyed by the source package: every binary built from it
        advisory(
            "TEST-SOURCE",
            "Debian:12",
            "glibc",
            &with(
                fixed(&format!("{glibc_version}+capstan1")),
                "ecosystem_specific",
                serde_json::json!({"urgency": "low"}),
            ),
        ),
        // the installed version listed, no fix known
        with(
            advisory(
                "TEST-LISTED",
                "Debian",
                "apt",
                &serde_json::json!({"versions": [version("apt")]}),
            ),
            "database_specific",
            serde_json::json!({"severity": "HIGH"}),
        ),
        // another distribution's package of the same name
        advisory("TEST-ALPINE", "Alpine:v3.19", "bash", &fixed("99")),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("osv")).unwrap();
    std::fs::write(
        dir.path().join("osv").join("debian.json"),
        serde_json::to_vec(&advisories).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), b"[{\"id\": \"X\"}]").unwrap();

    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncollect = false\n[images]\nwatch = false\nscan_on_pull = true\n",
    )
    .await;
    // a bad file changes nothing, and says which file
    let (code, _, err) = daemon
        .cli(&["vulndb", "import", dir.path().to_str().unwrap()])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.json"), "{err}");
    let (_, out, _) = daemon.cli(&["vulndb", "-o", "json"]).await;
    let status: VulnDbStatus = serde_json::from_str(&out).unwrap();
    assert_eq!(status.advisories, 0);
    let osv = dir.path().join("osv");
    let (code, out, err) = daemon
        .cli(&["vulndb", "import", osv.to_str().unwrap(), "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let status: VulnDbStatus = serde_json::from_str(&out).unwrap();
    assert_eq!((status.imported, status.advisories), (6, 6));

    // the image: every expected finding and no other
    let (code, report, err) = scan(&daemon, &[&debian.reference, "--refresh"]).await;
    assert_eq!(code, 0, "{err}");
    let report = report.unwrap();
    assert_eq!(report.os.as_deref(), Some("Debian:12"));
    assert_eq!(report.packages, packages.len());
    assert_eq!((report.layers, report.layers_read), (1, 1));
    // an advisory names a source package: every binary built from it (apt builds
    // libapt-pkg too)
    let built_from = |source: &str| -> BTreeSet<String> {
        packages
            .iter()
            .filter(|p| p.2 == source)
            .map(|p| p.0.clone())
            .collect()
    };
    let mut want = BTreeSet::new();
    for (id, source) in [
        ("TEST-ABOVE", "bash"),
        ("TEST-LISTED", "apt"),
        ("TEST-SOURCE", "glibc"),
    ] {
        want.extend(built_from(source).into_iter().map(|b| (id.to_owned(), b)));
    }
    assert_eq!(found(&report), want, "{:#?}", report.findings);
    let bash = report
        .findings
        .iter()
        .find(|f| f.package == "bash")
        .unwrap();
    assert_eq!(bash.severity, Severity::Critical);
    assert_eq!(bash.installed, version("bash"));
    assert_eq!(bash.fixed, Some(format!("{}+capstan1", version("bash"))));
    assert_eq!(report.findings[0].advisory, "TEST-ABOVE", "worst first");
    let libc = report
        .findings
        .iter()
        .find(|f| f.package == "libc6")
        .unwrap();
    assert_eq!(
        (libc.source.as_str(), libc.severity),
        ("glibc", Severity::Low)
    );
    let apt = report.findings.iter().find(|f| f.package == "apt").unwrap();
    assert_eq!((apt.fixed.as_deref(), apt.severity), (None, Severity::High));

    // --fail-on: exit 1 at or above the worst finding
    let (code, _, err) = scan(&daemon, &[&debian.reference, "--fail-on", "critical"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("critical"), "{err}");
    let (code, _, err) = daemon
        .cli(&["images", "scan", &debian.reference, "--fail-on", "severe"])
        .await;
    assert_eq!(code, 2, "{err}");

    // cached: no layer read again
    let (_, report, _) = scan(&daemon, &[&debian.reference]).await;
    assert_eq!(report.unwrap().layers_read, 0);

    // an image on top: its own dpkg status (bash gone) wins, the base layer comes from the cache
    let without_bash: String = debian
        .dpkg_status
        .split("\n\n")
        .filter(|p| !p.starts_with("Package: bash\n"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let derived = format!("{}:{}", unique("capt-scan"), "1");
    engine
        .build(
            capstan_engine::BuildContext {
                tar: tar_of(&[
                    (
                        "Dockerfile",
                        format!(
                            "FROM {}\nCOPY status /var/lib/dpkg/status\n",
                            debian.reference
                        )
                        .as_bytes(),
                    ),
                    ("status", without_bash.as_bytes()),
                ]),
                dockerfile: "Dockerfile".into(),
                ..capstan_engine::BuildContext::default()
            },
            &derived,
        )
        .await
        .unwrap();
    let (code, report, err) = scan(&daemon, &[&derived, "--fail-on", "critical"]).await;
    assert_eq!(code, 0, "{err}");
    let report = report.unwrap();
    assert_eq!((report.layers, report.layers_read), (2, 1));
    assert_eq!(report.packages, packages.len() - 1);
    assert!(!found(&report).iter().any(|(_, p)| p == "bash"));
    let (code, _, _) = scan(&daemon, &[&derived, "--fail-on", "high"]).await;
    assert_eq!(code, 1);

    // scan on pull: the pulled image is scanned and what it carries journaled
    let remote = format!("{}/{derived}", registry());
    engine.tag(&derived, &remote).await.unwrap();
    engine.push(&remote, None).await.unwrap();
    engine.remove_image(&remote, false).await.unwrap();
    engine.pull(&remote, None).await.unwrap();
    let scanned = eventually(
        Duration::from_mins(1),
        "the pulled image scanned",
        || async {
            daemon
                .all_events("type=capstan&action=image_scanned")
                .await
                .into_iter()
                .find(|e| e.actor == remote)
        },
    )
    .await;
    assert_eq!(scanned.attributes["worst"], "high", "{scanned:?}");
    assert_eq!(
        scanned.attributes["high"],
        built_from("apt").len().to_string()
    );
    assert_eq!(scanned.attributes["os"], "Debian:12");
    engine.remove_image(&remote, false).await.unwrap();

    // which running containers carry what
    let name = unique("capt-scan");
    let id = engine
        .create_container(
            &name,
            &derived,
            &["sleep", "3600"],
            std::collections::HashMap::new(),
        )
        .await
        .unwrap();
    engine.start_container(&id).await.unwrap();
    let (code, out, err) = daemon
        .cli(&["images", "scan", "--running", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
    let list: Vec<ContainerFindings> = serde_json::from_str(&out).unwrap();
    let ours = list.iter().find(|c| c.container == name).unwrap();
    assert_eq!(
        ours.counts.get(&Severity::High).copied(),
        Some(built_from("apt").len() as u64)
    );
    assert_eq!(ours.counts.get(&Severity::Critical), None);
    assert_eq!(
        ours.counts.get(&Severity::Low).copied(),
        Some(glibc.len() as u64)
    );
    // an image the engine lacks is pulled first; one no registry has is bad input, said
    // clearly (a registry port nothing listens on: no request leaves the machine)
    let (code, _, err) = daemon
        .cli(&["images", "scan", "127.0.0.1:9/capstan-test/no-such:1"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot pull 127.0.0.1:9/capstan-test/no-such:1 from 127.0.0.1:9"),
        "{err}"
    );
    engine.remove_container(&id, true).await.unwrap();
    engine.remove_image(&derived, true).await.unwrap();
}
