//! What the benchmarks share: reading their command line.

use std::path::PathBuf;

/// `BENCH CAPSTAN [--NAME N]`: the capstan binary (default `target/release/capstan`) and the
/// value of `--name` (`default` when not given).
///
/// # Panics
/// No capstan binary there, or a value that is not a number: a benchmark has no one to report
/// to but its runner.
#[allow(clippy::expect_used)]
pub fn args(name: &str, default: u64) -> (PathBuf, u64) {
    let mut args = std::env::args().skip(1);
    let capstan = args
        .next()
        .map_or_else(|| PathBuf::from("target/release/capstan"), PathBuf::from)
        .canonicalize()
        .expect("the capstan binary (build it with cargo build --release)");
    let mut value = default;
    while let Some(flag) = args.next() {
        if flag == format!("--{name}") {
            value = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag");
        }
    }
    (capstan, value)
}
