//! Registry check-cycle benchmark (issue 5). A real registry (Debian's `docker-registry`) holds
//! 200 repositories with one tag each (and a newer tag in a tenth of them); capstan watches
//! the 200 refs and runs check cycles on demand. Printed per cycle: the requests the registry
//! served (counted at its access log) per kind and per ref, and the wall time, against the
//! target: one HEAD per ref per cycle and no manifest or blob GET when nothing changed.
//! Image scanning (the second figure) is not built yet. Prints figures; asserts
//! nothing. Usage: `bench/run` or `images CAPSTAN [--refs N]`.
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
    println!("  image scan (cold and cached): not built yet");
}
