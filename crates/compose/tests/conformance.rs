//! Conformance with the reference implementation: on every corpus file that Debian's
//! `docker-compose` 1.29 accepts, capstan's resolved model agrees with `docker-compose config` on
//! every field both print. Representations differ by design (capstan prints the long syntax
//! only), so both sides are brought to one form first; the rules are listed in `normal`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::{Map, Value};

fn corpus() -> std::path::PathBuf {
    // the runner's value first: a test binary reused from a checkout elsewhere (one target
    // dir shared between clones) must still read this checkout's files
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).to_owned(),
            Into::into,
        )
        .join("tests/corpus")
}

fn size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    Some(n * mult)
}

fn text(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => other.clone(),
    }
}

/// One form for both sides.
fn normal(path: &[&str], v: &Value) -> Value {
    let key = path.last().copied().unwrap_or_default();
    let parent = path
        .len()
        .checked_sub(2)
        .map(|i| path[i])
        .unwrap_or_default();
    match (key, v) {
        // short port strings become the long form
        ("ports", Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|p| {
                    let long = match p {
                        Value::String(s) => {
                            let (spec, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
                            let parts: Vec<&str> = spec.split(':').collect();
                            let (ip, published, target) = match parts.as_slice() {
                                [t] => (None, None, *t),
                                [p, t] => (None, Some(*p), *t),
                                [ip, p, t] => (Some(*ip), Some(*p), *t),
                                _ => panic!("unexpected port {s}"),
                            };
                            let mut m = Map::new();
                            m.insert("target".into(), Value::String(target.into()));
                            m.insert("protocol".into(), Value::String(proto.into()));
                            if let Some(p) = published.filter(|p| !p.is_empty()) {
                                m.insert("published".into(), Value::String(p.into()));
                            }
                            if let Some(ip) = ip {
                                m.insert("host_ip".into(), Value::String(ip.into()));
                            }
                            Value::Object(m)
                        }
                        other => other.clone(),
                    };
                    let mut m = long.as_object().cloned().unwrap_or_default();
                    m.remove("mode");
                    Value::Object(m.into_iter().map(|(k, v)| (k, text(&v))).collect())
                })
                .collect(),
        ),
        // short volume strings become the long form
        ("volumes", Value::Array(items)) if path.len() == 3 => Value::Array(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => {
                        let parts: Vec<&str> = s.split(':').collect();
                        let mut m = Map::new();
                        let (src, target, mode) = match parts.as_slice() {
                            [t] => (None, *t, ""),
                            [s, t] => (Some(*s), *t, ""),
                            [s, t, m] => (Some(*s), *t, *m),
                            _ => panic!("unexpected volume {s}"),
                        };
                        let kind = if src.is_some_and(|s| s.starts_with('/') || s.starts_with('.'))
                        {
                            "bind"
                        } else {
                            "volume"
                        };
                        m.insert("type".into(), Value::String(kind.into()));
                        if let Some(src) = src {
                            m.insert("source".into(), Value::String(src.into()));
                        }
                        m.insert("target".into(), Value::String(target.into()));
                        if mode.split(',').any(|m| m == "ro") {
                            m.insert("read_only".into(), Value::String("true".into()));
                        }
                        Value::Object(m)
                    }
                    other => normal(&[path, &["volume"]].concat(), other),
                })
                .collect(),
        ),
        ("extra_hosts", Value::Array(items)) => Value::Object(
            items
                .iter()
                .filter_map(|i| i.as_str()?.split_once(':'))
                .map(|(h, ip)| (h.to_owned(), Value::String(ip.to_owned())))
                .collect(),
        ),
        ("test", Value::String(s)) if parent == "healthcheck" => Value::Array(vec![
            Value::String("CMD-SHELL".into()),
            Value::String(s.clone()),
        ]),
        (_, Value::Number(n)) if parent == "ulimits" => {
            serde_json::json!({"soft": n.to_string(), "hard": n.to_string()})
        }
        ("size", Value::String(s)) => {
            size(s).map_or_else(|| v.clone(), |n| Value::String(n.to_string()))
        }
        // a throttle in bytes is a size; 1.29 prints bytes
        ("rate", Value::String(s))
            if matches!(
                path.get(path.len().wrapping_sub(3)),
                Some(&("device_read_bps" | "device_write_bps"))
            ) =>
        {
            size(s).map_or_else(|| v.clone(), |n| Value::String(n.to_string()))
        }
        // real-time microseconds may be written as a duration; 1.29 prints microseconds
        ("cpu_rt_period" | "cpu_rt_runtime", Value::String(s)) => capstan_compose::model::micros(s)
            .map_or_else(|_| v.clone(), |n| Value::String(n.to_string())),
        // a bare environment name that is unset: 1.29 prints null, capstan leaves it out
        ("environment", Value::Object(m)) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
        ),
        (_, Value::Null) if matches!(parent, "networks" | "volumes") => Value::Object(Map::new()),
        (_, Value::Object(m)) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normal(&[path, &[k.as_str()]].concat(), v)))
                .collect(),
        ),
        (_, Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| normal(&[path, &["[]"]].concat(), i))
                .collect(),
        ),
        (_, scalar) => text(scalar),
    }
}

/// Differences on the fields both sides have.
fn disagreements(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                if let Some(vb) = y.get(k) {
                    disagreements(&format!("{path}.{k}"), va, vb, out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() == y.len() {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    disagreements(&format!("{path}[{i}]"), va, vb, out);
                }
            } else {
                out.push(format!("{path}: {a} vs {b}"));
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: docker-compose says {a}, capstan says {b}")),
    }
}

#[test]
fn capstan_agrees_with_docker_compose_config() {
    let mut compared = 0;
    for entry in std::fs::read_dir(corpus().join("valid")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = format!("valid/{}", path.file_name().unwrap().to_string_lossy());
        let env = [("FROM_CALLER", "caller"), ("FROM_ENV", "arg")];
        let out = std::process::Command::new("docker-compose")
            .args(["-f", &name, "config"])
            .current_dir(corpus())
            .envs(env)
            .env_remove("COMPOSE_PROFILES")
            .output()
            .expect("docker-compose (Debian's 1.29) is needed: scripts/test installs it");
        if !out.status.success() {
            // 1.29 does not know every key of the spec; such files are capstan-only
            eprintln!(
                "{name}: docker-compose 1.29 rejects it: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            continue;
        }
        let theirs =
            capstan_compose::parse_yaml(&name, &String::from_utf8(out.stdout).unwrap()).unwrap();
        let mut opts = capstan_compose::Options {
            files: vec![name.clone().into()],
            environment: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            working_dir: corpus(),
            text: None,
            ..Default::default()
        };
        // 1.29's `config` ignores profiles; enable them all to compare the same services
        opts.profiles = vec!["*".into()];
        let ours = serde_json::to_value(capstan_compose::load(&opts).unwrap().project).unwrap();
        let (theirs, ours) = (normal(&[], &theirs), normal(&[], &ours));
        let their_services: Vec<_> = theirs["services"].as_object().unwrap().keys().collect();
        let our_services: Vec<_> = ours["services"].as_object().unwrap().keys().collect();
        assert_eq!(their_services, our_services, "{name}: services");
        let mut diffs = Vec::new();
        disagreements(&name, &theirs, &ours, &mut diffs);
        assert!(
            diffs.is_empty(),
            "{name} disagrees with docker-compose:\n{}",
            diffs.join("\n")
        );
        compared += 1;
    }
    assert!(
        compared >= 1,
        "no corpus file was accepted by docker-compose 1.29"
    );
}
