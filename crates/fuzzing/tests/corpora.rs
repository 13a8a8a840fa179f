//! Every input of every fuzz corpus, and every crash fuzzing found, replayed: a target that
//! panics on one fails here, in the ordinary suite, without a fuzzer.

use std::path::Path;

#[test]
fn every_corpus_and_every_crash_found_replays_without_a_panic() {
    let root = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("../../fuzz");
    let mut replayed = 0;
    for (name, target) in capstan_fuzzing::TARGETS {
        let mut inputs = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                eprintln!("{}", path.display());
                target(&data);
                inputs += 1;
            }
        }
        // every target has seeds: a target whose corpus went missing would replay nothing
        assert!(inputs > 0, "fuzz/corpus/{name} is empty");
        replayed += inputs;
    }
    eprintln!("replayed {replayed} inputs");
}
