//! OSV advisories (<https://ossf.github.io/osv-schema/>) as capstan keeps them: which
//! versions of which package in which ecosystem are affected, what fixes them, how severe.

use capstan_model::Severity;
use serde::{Deserialize, Serialize};

/// One version interval: affected from `introduced` (inclusive; `None` or `0` is the start)
/// up to `fixed` (exclusive) or `last_affected` (inclusive); open-ended with neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
}

/// A package an advisory affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// `Debian:12`, `Alpine:v3.19`, or a bare `Debian`.
    pub ecosystem: String,
    /// The package as the ecosystem names it (Debian: the source package).
    pub package: String,
    pub ranges: Vec<Range>,
    /// Versions listed one by one as affected.
    pub versions: Vec<String>,
    /// This package's own severity, when the advisory gives one per package.
    pub severity: Option<Severity>,
}

/// An advisory, reduced to what matching and reporting need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    pub modified: String,
    pub summary: String,
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub affected: Vec<Affected>,
}

#[derive(Deserialize)]
struct RawAdvisory {
    id: String,
    #[serde(default)]
    modified: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    details: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    affected: Vec<RawAffected>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Vec<RawRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// A severity word under `severity` or `urgency` in a `*_specific` object.
fn specific(value: Option<&serde_json::Value>) -> Option<Severity> {
    let v = value?;
    ["severity", "urgency"]
        .iter()
        .find_map(|k| v.get(k)?.as_str().and_then(Severity::from_word))
}

/// The highest severity an OSV `severity` list gives (CVSS v3 vectors scored, words read).
fn from_list(list: &[RawSeverity]) -> Option<Severity> {
    list.iter()
        .filter_map(|s| {
            if s.kind.starts_with("CVSS_V3") {
                cvss3_score(&s.score).map(Severity::from_score)
            } else {
                Severity::from_word(&s.score)
                    .or_else(|| s.score.parse::<f64>().ok().map(Severity::from_score))
            }
        })
        .max()
}

/// Why an input is not OSV advisories; each names the input (`origin`).
#[derive(Debug, thiserror::Error)]
pub enum OsvError {
    /// The input is not JSON at all.
    #[error("{origin}: not JSON ({source})")]
    NotJson {
        origin: String,
        source: serde_json::Error,
    },
    /// The advisory at `index` (0 for a single one) is JSON but not an OSV advisory.
    #[error("{origin}: advisory {index}: not an OSV advisory ({source})")]
    NotAdvisory {
        origin: String,
        index: usize,
        source: serde_json::Error,
    },
}

/// Reads OSV JSON: one advisory or an array of them. `origin` names the input in errors.
///
/// # Errors
/// The JSON is not OSV; the error names `origin` and the advisory's position.
pub fn parse(origin: &str, bytes: &[u8]) -> Result<Vec<Advisory>, OsvError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| OsvError::NotJson {
            origin: origin.to_owned(),
            source,
        })?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let raw: RawAdvisory =
                serde_json::from_value(item).map_err(|source| OsvError::NotAdvisory {
                    origin: origin.to_owned(),
                    index,
                    source,
                })?;
            Ok(convert(raw))
        })
        .collect()
}

fn convert(raw: RawAdvisory) -> Advisory {
    let severity = specific(raw.database_specific.as_ref())
        .or_else(|| from_list(&raw.severity))
        .unwrap_or(Severity::Unknown);
    let affected = raw
        .affected
        .into_iter()
        .filter_map(|a| {
            let package = a.package?;
            let mut ranges = Vec::new();
            for r in a.ranges.iter().filter(|r| r.kind == "ECOSYSTEM") {
                let mut open: Option<Range> = None;
                for event in &r.events {
                    let text = |k: &str| event.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                    if let Some(v) = text("introduced") {
                        if let Some(done) = open.take() {
                            ranges.push(done);
                        }
                        open = Some(Range {
                            introduced: Some(v).filter(|v| v != "0"),
                            fixed: None,
                            last_affected: None,
                        });
                    } else if let Some(v) = text("fixed") {
                        let mut r = open.take().unwrap_or(Range {
                            introduced: None,
                            fixed: None,
                            last_affected: None,
                        });
                        r.fixed = Some(v);
                        ranges.push(r);
                    } else if let Some(v) = text("last_affected") {
                        let mut r = open.take().unwrap_or(Range {
                            introduced: None,
                            fixed: None,
                            last_affected: None,
                        });
                        r.last_affected = Some(v);
                        ranges.push(r);
                    }
                }
                if let Some(r) = open {
                    ranges.push(r);
                }
            }
            Some(Affected {
                ecosystem: package.ecosystem,
                package: package.name,
                ranges,
                versions: a.versions,
                severity: specific(a.ecosystem_specific.as_ref())
                    .or_else(|| specific(a.database_specific.as_ref()))
                    .or_else(|| from_list(&a.severity)),
            })
        })
        .collect();
    let summary = if raw.summary.is_empty() {
        raw.details.lines().next().unwrap_or_default().to_owned()
    } else {
        raw.summary
    };
    Advisory {
        id: raw.id,
        modified: raw.modified,
        summary,
        aliases: raw.aliases,
        severity,
        affected,
    }
}

/// The base score of a CVSS v3.0/v3.1 vector (`CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`
/// is 9.8), as the specification computes it; `None` for a vector that is not one.
pub fn cvss3_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    let metrics: std::collections::HashMap<&str, &str> =
        parts.filter_map(|p| p.split_once(':')).collect();
    let m = |k: &str| metrics.get(k).copied();
    let changed = match m("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match m("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match m("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (m("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match m("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| match m(k)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02_f64).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let base = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Some(round_up(base))
}

/// CVSS 3.1's round-up to one decimal, free of floating-point surprises.
fn round_up(x: f64) -> f64 {
    let scaled = (x * 100_000.0).round() as i64;
    if scaled % 10_000 == 0 {
        scaled as f64 / 100_000.0
    } else {
        ((scaled / 10_000) + 1) as f64 / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_vectors_score_as_the_specification_says() {
        for (vector, score) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ] {
            assert_eq!(cvss3_score(vector), Some(score), "{vector}");
        }
        assert_eq!(cvss3_score("CVSS:2.0/AV:N"), None);
        assert_eq!(
            cvss3_score("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            None
        );
    }

    #[test]
    fn advisories_read_ranges_and_severities() {
        let json = br#"[{
            "id": "DSA-1-1", "modified": "2026-01-01T00:00:00Z", "aliases": ["CVE-2026-1"],
            "details": "first line\nsecond",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [
              {"package": {"ecosystem": "Debian:12", "name": "openssl"},
               "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}, {"introduced": "3.1"}, {"last_affected": "3.1.2"}]},
                          {"type": "GIT", "repo": "x", "events": [{"introduced": "abc"}]}],
               "ecosystem_specific": {"urgency": "low"}},
              {"package": {"ecosystem": "Alpine:v3.19", "name": "openssl"}, "versions": ["3.1.4-r5"]}
            ]},
            {"id": "GHSA-x", "affected": [], "database_specific": {"severity": "MODERATE"}}]"#;
        let a = parse("test.json", json).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].summary, "first line");
        assert_eq!(a[0].severity, Severity::Critical);
        assert_eq!(a[0].affected[0].severity, Some(Severity::Low));
        assert_eq!(
            a[0].affected[0].ranges,
            [
                Range {
                    introduced: None,
                    fixed: Some("3.0.13-1~deb12u1".into()),
                    last_affected: None
                },
                Range {
                    introduced: Some("3.1".into()),
                    fixed: None,
                    last_affected: Some("3.1.2".into())
                },
            ]
        );
        assert_eq!(a[0].affected[1].versions, ["3.1.4-r5"]);
        assert_eq!(a[1].severity, Severity::Medium);
        let err = parse(
            "bad.json",
            br#"[{"id": "A", "affected": []}, {"affected": []}]"#,
        )
        .unwrap_err();
        assert!(matches!(err, OsvError::NotAdvisory { index: 1, .. }));
        assert!(err.to_string().contains("bad.json: advisory 1"), "{err}");
        assert!(
            parse("x.json", b"{nope")
                .unwrap_err()
                .to_string()
                .starts_with("x.json: not JSON")
        );
    }
}
