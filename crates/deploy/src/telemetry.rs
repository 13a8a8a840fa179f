//! The deploy job's own figures on `/metrics`: the ledger's releases by how they ended.

use capstan_model::Exposition;

/// Writes `results` (the ledger's count of releases per result) as
/// `capstan_releases_total{result=...}`.
pub fn render(out: &mut Exposition, results: &[(String, i64)]) {
    out.family(
        "capstan_releases_total",
        "counter",
        "Releases in the ledger (deploys, rollbacks, automatic updates, downs) by how they ended.",
    );
    for (result, n) in results {
        out.sample("capstan_releases_total", &[("result", result)], *n as f64);
    }
}
