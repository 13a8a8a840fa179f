//! Registry check-cycle benchmark (issue 5). A real registry (Debian's `docker-registry`) holds
//! 200 repositories with one tag each (and a newer tag in a tenth of them); capstan watches
//! the 200 refs and runs check cycles on demand. Printed per cycle: the requests the registry
//! served (counted at its access log) per kind and per ref, and the wall time, against the
//! target: one HEAD per ref per cycle and no manifest or blob GET when nothing changed.
//! Then image scanning: a debootstrap'd Debian image scanned cold (its layer read through
//! `docker save`) and cached (the layer's package databases from the cache), against a
//! database of 20,000 advisories that name every one of its source packages; the baseline is
//! the `docker save` of the same image in the same run, the floor of any scan that reads
//! layers through the engine. Prints figures; asserts nothing. Usage: `bench/run` or
//! `images CAPSTAN [--refs N]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

use capstan_model::ImageUpdates;
use capstan_testkit::{Daemon, OwnEngine, Registry, RegistryOptions};

/// One check cycle through the API: its wall time and what the registry saw.
async fn cycle(
    daemon: &Daemon,
    registry: &Registry,
    seen: &mut usize,
) -> (f64, ImageUpdates, BTreeMap<String, usize>) {
    let start = Instant::now();
    let (code, out, err) = daemon
        .cli(&["images", "updates", "--check-now", "-o", "json"])
        .await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    let mut kinds = BTreeMap::new();
    for r in registry.asked_since(seen) {
        *kinds.entry(r).or_insert(0) += 1;
    }
    (secs, serde_json::from_str(&out).unwrap(), kinds)
}

fn report(
    label: &str,
    refs: usize,
    (secs, list, kinds): &(f64, ImageUpdates, BTreeMap<String, usize>),
) {
    let n = |k: &str| kinds.get(k).copied().unwrap_or(0);
    let heads = n("HEAD manifests");
    let gets = n("GET manifests");
    let tags = n("GET tags");
    let blobs = kinds
        .iter()
        .filter(|(k, _)| k.ends_with("blobs"))
        .map(|(_, v)| v)
        .sum::<usize>();
    let failed = list.updates.iter().filter(|u| u.error.is_some()).count();
    let offered = list.updates.iter().filter(|u| u.has_update()).count();
    println!(
        "  {label:<34} {secs:>6.2} s  {:>6.1} ms/ref | HEAD {heads:>4} ({:.2}/ref)  GET manifest {gets:>3}  GET tags {tags:>3}  blobs {blobs} | updates {offered}, failed {failed}",
        secs * 1000.0 / refs as f64,
        heads as f64 / refs as f64,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (capstan, refs) = capstan_bench::args("refs", 200);
    let refs = usize::try_from(refs).unwrap();
    let own = OwnEngine::start().await;
    let registry = Registry::start(RegistryOptions::default()).await;
    let started = Instant::now();
    for i in 0..refs {
        registry
            .push(&format!("bench/app{i}"), "1.0.0", &format!("app{i}"))
            .await;
        if i % 10 == 0 {
            registry
                .push(&format!("bench/app{i}"), "1.1.0", &format!("app{i}-next"))
                .await;
        }
    }
    println!(
        "check cycles over {refs} refs in {refs} repositories of a local registry (filled in {:.1} s):",
        started.elapsed().as_secs_f64()
    );
    let host = registry.host();
    let list = |policy: &str| {
        (0..refs)
            .map(|i| format!("\"{host}/bench/app{i}:1.0.0 {policy}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut seen = 0;
    for policy in ["digest", "minor"] {
        let config = format!(
            "[logs]\ncollect = false\n[images]\nfirst_check_after = \"1h\"\ncontainers = [\"none-of-them\"]\nrefs = [{}]\n",
            list(policy)
        );
        let daemon = Daemon::start_with(&capstan, &own.host(), &config).await;
        registry.asked_since(&mut seen);
        println!(" policy {policy}:");
        let first = cycle(&daemon, &registry, &mut seen).await;
        report("first cycle", refs, &first);
        let second = cycle(&daemon, &registry, &mut seen).await;
        report("nothing changed", refs, &second);
        if policy == "digest" {
            // a tenth of the tags get new content
            for i in (0..refs).step_by(10) {
                registry
                    .push(
                        &format!("bench/app{i}"),
                        "1.0.0",
                        &format!("app{i}-rebuilt"),
                    )
                    .await;
            }
            let third = cycle(&daemon, &registry, &mut seen).await;
            report("a tenth re-pushed", refs, &third);
        }
    }
    println!(
        "  target: 1 HEAD per ref per cycle and no manifest or blob GET when nothing changed (a tag policy adds one tag listing per repository and a HEAD per candidate)"
    );
    scan(&capstan, &own).await;
}

/// Times `capstan images scan` of the Debian image, cold and cached, against `docker save`.
async fn scan(capstan: &std::path::Path, own: &OwnEngine) {
    let engine = own.engine().await;
    let debian = capstan_testkit::debian_image(&engine).await;
    let daemon = Daemon::start(capstan, &own.host()).await;
    // an advisory fixed above the installed version for every source package, and padding
    let mut advisories = Vec::new();
    let mut sources = std::collections::BTreeSet::new();
    for p in debian.dpkg_status.split("\n\n") {
        let field = |k: &str| {
            p.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(": ").map(str::to_owned))
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        let source =
            field("Source").map_or(name, |s| s.split(' ').next().unwrap_or_default().to_owned());
        if sources.insert(source.clone()) {
            advisories.push(serde_json::json!({
                "id": format!("BENCH-{source}"),
                "affected": [{"package": {"ecosystem": "Debian:12", "name": source},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": format!("{version}+bench1")}]}]}],
            }));
        }
    }
    let matching = advisories.len();
    for i in advisories.len()..20_000 {
        advisories.push(serde_json::json!({
            "id": format!("BENCH-PAD-{i}"),
            "affected": [{"package": {"ecosystem": "Debian:12", "name": format!("pad{}", i % 4000)},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1"}]}]}],
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("osv.json");
    std::fs::write(&file, serde_json::to_vec(&advisories).unwrap()).unwrap();
    let started = Instant::now();
    let (code, _, err) = daemon
        .cli(&["vulndb", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{err}");
    let import = started.elapsed().as_secs_f64();
    let timed = |refresh: bool| {
        let daemon = &daemon;
        let reference = debian.reference.clone();
        async move {
            let mut args = vec!["images", "scan", reference.as_str(), "-o", "json"];
            if refresh {
                args.push("--refresh");
            }
            let started = Instant::now();
            let (code, out, err) = daemon.cli(&args).await;
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(code, 0, "{err}");
            let report: capstan_model::ScanReport = serde_json::from_str(&out).unwrap();
            (secs, report)
        }
    };
    let save_file = dir.path().join("saved.tar");
    let started = Instant::now();
    engine
        .save_to(
            &debian.reference,
            tokio::fs::File::create(&save_file).await.unwrap(),
        )
        .await
        .unwrap();
    let save = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&save_file).map_or(0, |m| m.len());
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let (secs, report) = timed(true).await;
        cold.push(secs);
        let (secs, report2) = timed(false).await;
        cached.push(secs);
        last = Some((report, report2));
    }
    let (report, report2) = last.unwrap();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (cold, cached) = (median(&mut cold), median(&mut cached));
    println!(
        "image scan of {} ({} packages, {:.0} MiB saved), {} advisories ({matching} naming its packages), imported in {import:.2} s:",
        debian.reference,
        report.packages,
        size as f64 / 1_048_576.0,
        advisories.len(),
    );
    println!(
        "  cold   {cold:>6.3} s  ({} of {} layers read, {} findings)",
        report.layers_read,
        report.layers,
        report.findings.len()
    );
    println!(
        "  cached {cached:>6.3} s  ({} of {} layers read, {} findings)",
        report2.layers_read,
        report2.layers,
        report2.findings.len()
    );
    println!(
        "  baseline docker save alone {save:.3} s | cold/save {:.2}x | cached/cold {:.3}x (median of 3, each through the CLI)",
        cold / save,
        cached / cold
    );
}
