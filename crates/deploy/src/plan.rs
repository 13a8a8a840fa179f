//! What a deploy would change, service by service, and why; and the order services start in.
//! Pure: the caller reads the engine and the ledger, this decides.

use std::collections::{BTreeMap, BTreeSet};

use capstan_compose::Project;
use capstan_compose::model::Service;
pub use capstan_model::{Action, Plan, ServicePlan};

use crate::target::Replica;

/// Keys that change how a service is rolled out or scaled, not what its containers are.
const NOT_IN_SPEC: &[&str] = &["replicas", "update_config", "rollback_config"];

/// A service's definition as it shapes its containers, canonical JSON.
fn spec_json(service: &Service) -> serde_json::Value {
    let mut v = serde_json::to_value(service).unwrap_or_default();
    if let Some(deploy) = v
        .get_mut("deploy")
        .and_then(serde_json::Value::as_object_mut)
    {
        for k in NOT_IN_SPEC {
            deploy.remove(*k);
        }
    }
    if let Some(obj) = v.as_object_mut() {
        // start order, replica count, when to pull and what `up` prints: not container shape
        for k in ["depends_on", "profiles", "scale", "pull_policy", "attach"] {
            obj.remove(k);
        }
    }
    v
}

/// A stable hash of what shapes a service's containers (the `io.capstan.spec` label): FNV-1a
/// over its canonical JSON (keys sorted), hex.
pub fn spec_hash(service: &Service) -> String {
    fnv_hex(spec_json(service).to_string().as_bytes())
}

/// FNV-1a, 64 bit, as 16 hex digits: stable across releases (unlike `DefaultHasher`), which
/// labels and ledgers need.
pub fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The hash a replica of `service` carries: [`spec_hash`], plus the digests of the configs and
/// secrets it uses, so that changing one rolls only the services that use it.
pub fn desired_hash(service: &Service, file_digests: &BTreeMap<String, String>) -> String {
    let base = spec_hash(service);
    let used: Vec<String> = service
        .configs
        .iter()
        .map(|r| format!("configs/{}", r.source))
        .chain(
            service
                .secrets
                .iter()
                .map(|r| format!("secrets/{}", r.source)),
        )
        .filter_map(|k| file_digests.get(&k).map(|d| format!("{k}={d}")))
        .collect();
    if used.is_empty() {
        return base;
    }
    format!("{base}-{}", fnv_hex(used.join(",").as_bytes()))
}

/// The desired state of a deploy.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    /// The model to deploy.
    pub project: &'a Project,
    /// The model of the last release, when there is one (to name what changed).
    pub previous: Option<&'a Project>,
    /// Service → the image id its reference resolves to now.
    pub image_ids: &'a BTreeMap<String, String>,
    /// Content digests of configs and secrets (`configs/NAME`, `secrets/NAME`).
    pub file_digests: &'a BTreeMap<String, String>,
}

/// Compares the desired state with the running replicas.
pub fn plan(desired: Desired<'_>, running: &[Replica]) -> Plan {
    let mut by_service: BTreeMap<&str, Vec<&Replica>> = BTreeMap::new();
    for r in running {
        by_service.entry(r.service.as_str()).or_default().push(r);
    }
    let mut services = Vec::new();
    for (name, service) in &desired.project.services {
        let want = replicas_of(service);
        let have = by_service.remove(name.as_str()).unwrap_or_default();
        let action = plan_service(desired, name, service, want, &have);
        services.push(ServicePlan {
            service: name.clone(),
            action,
            registry: None,
        });
    }
    for (name, have) in by_service {
        services.push(ServicePlan {
            service: name.to_owned(),
            action: Action::Remove {
                replicas: have.len() as u32,
            },
            registry: None,
        });
    }
    // a service in another's network namespace is made again when that one is replaced: the
    // namespace it joined goes with the container it was made with
    let replaced: BTreeSet<String> = services
        .iter()
        .filter(|p| matches!(p.action, Action::Recreate { .. } | Action::Repair { .. }))
        .map(|p| p.service.clone())
        .collect();
    for p in &mut services {
        let joined = desired
            .project
            .services
            .get(&p.service)
            .and_then(Service::network_service);
        if let (Some(other), Action::Unchanged) = (joined, &p.action)
            && replaced.contains(other)
        {
            p.action = Action::Recreate {
                reasons: vec![format!(
                    "network_mode: service:{other}, and {other} is replaced"
                )],
            };
        }
    }
    services.sort_by(|a, b| a.service.cmp(&b.service));
    Plan {
        services,
        levels: start_levels(desired.project),
        violations: Vec::new(),
        notes: Vec::new(),
    }
}

/// `deploy.replicas`, default 1.
pub fn replicas_of(service: &Service) -> u32 {
    service.declared_replicas().clamp(0, i64::from(u32::MAX)) as u32
}

fn plan_service(
    desired: Desired<'_>,
    name: &str,
    service: &Service,
    want: u32,
    have: &[&Replica],
) -> Action {
    if have.is_empty() {
        return if want == 0 {
            Action::Unchanged
        } else {
            Action::Create { replicas: want }
        };
    }
    let hash = desired_hash(service, desired.file_digests);
    let image = desired.image_ids.get(name);
    let stale: Vec<&&Replica> = have.iter().filter(|r| r.spec_hash != hash).collect();
    let old_image: Vec<&&Replica> = have
        .iter()
        .filter(|r| image.is_some_and(|i| *i != r.image_id))
        .collect();
    // the whole service changed: a rolling update
    if stale.len() == have.len() || (!old_image.is_empty() && old_image.len() == have.len()) {
        let mut reasons = Vec::new();
        if let (Some(new), Some(r)) = (image, old_image.first()) {
            reasons.push(format!(
                "image digest changed ({} -> {})",
                short(&r.image_id),
                short(new)
            ));
        }
        if !stale.is_empty() {
            reasons.extend(changed_keys(
                desired.previous.and_then(|p| p.services.get(name)),
                service,
            ));
        }
        return Action::Recreate { reasons };
    }
    // some replicas drifted or stopped: repair those only
    let mut broken: BTreeSet<u32> = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    for r in have {
        if r.spec_hash != hash {
            broken.insert(r.replica);
            reasons.insert(format!(
                "replica {} differs from the Compose file (changed by hand?)",
                r.replica
            ));
        } else if image.is_some_and(|i| *i != r.image_id) {
            broken.insert(r.replica);
            reasons.insert(format!("replica {} runs an older image", r.replica));
        } else if r.state != "running" && r.replica <= want {
            broken.insert(r.replica);
            reasons.insert(format!("replica {} is {}", r.replica, r.state));
        }
    }
    let count = have.len() as u32;
    if !broken.is_empty() {
        return Action::Repair {
            replicas: broken.into_iter().collect(),
            reasons: reasons.into_iter().collect(),
        };
    }
    if count != want {
        return Action::Scale {
            from: count,
            to: want,
        };
    }
    Action::Unchanged
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Which top-level keys of a service differ between releases.
fn changed_keys(previous: Option<&Service>, now: &Service) -> Vec<String> {
    let Some(previous) = previous else {
        return vec!["definition differs from the running containers".to_owned()];
    };
    let (a, b) = (spec_json(previous), spec_json(now));
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k} changed"))
        .collect();
    if changed.is_empty() {
        vec!["definition differs from the running containers".to_owned()]
    } else {
        changed
    }
}

/// Services grouped in start order by `depends_on` (the loader rejected cycles).
pub fn start_levels(project: &Project) -> Vec<Vec<String>> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut levels = Vec::new();
    while placed.len() < project.services.len() {
        let level: Vec<String> = project
            .services
            .iter()
            .filter(|(n, _)| !placed.contains(n.as_str()))
            .filter(|(_, s)| {
                // a service in another's network namespace starts after it, as if it said so
                s.depends_on
                    .iter()
                    .flat_map(|d| d.0.keys().map(String::as_str))
                    .chain(s.network_service())
                    .all(|d| placed.contains(d) || !project.services.contains_key(d))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if level.is_empty() {
            // a cycle slipped through: start the rest together rather than never
            levels.push(
                project
                    .services
                    .keys()
                    .filter(|n| !placed.contains(n.as_str()))
                    .cloned()
                    .collect(),
            );
            break;
        }
        for n in &level {
            placed.insert(
                project
                    .services
                    .get_key_value(n)
                    .map_or("", |(k, _)| k.as_str()),
            );
        }
        levels.push(level);
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        capstan_compose::load(&capstan_compose::Options {
            project_name: Some("app".into()),
            working_dir: dir.path().to_owned(),
            text: None,
            ..Default::default()
        })
        .unwrap()
        .project
    }

    fn replica(p: &Project, service: &str, n: u32, image: &str) -> Replica {
        Replica {
            id: format!("{service}-{n}"),
            name: format!("app-{service}-{n}"),
            service: service.into(),
            replica: n,
            spec_hash: spec_hash(&p.services[service]),
            image_id: image.into(),
            state: "running".into(),
            exit_code: 0,
            health: None,
            node: None,
            endpoints: Vec::new(),
        }
    }

    const V1: &str = "services:\n  db:\n    image: pg\n  web:\n    image: web:1\n    environment: {A: '1'}\n    depends_on: [db]\n    deploy: {replicas: 2}\n  cache:\n    image: redis\n";

    fn action<'a>(plan: &'a Plan, service: &str) -> &'a Action {
        &plan
            .services
            .iter()
            .find(|s| s.service == service)
            .unwrap()
            .action
    }

    #[test]
    fn a_first_deploy_creates_everything_in_dependency_order() {
        let p = project(V1);
        let images = BTreeMap::new();
        let plan = plan(
            Desired {
                project: &p,
                previous: None,
                image_ids: &images,
                file_digests: &BTreeMap::new(),
            },
            &[],
        );
        assert_eq!(action(&plan, "web"), &Action::Create { replicas: 2 });
        assert_eq!(
            plan.levels,
            vec![
                vec!["cache".to_owned(), "db".to_owned()],
                vec!["web".to_owned()]
            ]
        );
        assert!(!plan.is_empty());
    }

    #[test]
    fn unchanged_services_are_left_alone() {
        let p = project(V1);
        let images = BTreeMap::from([("web".to_owned(), "sha256:w1".to_owned())]);
        let running = [
            replica(&p, "db", 1, "sha256:d"),
            replica(&p, "web", 1, "sha256:w1"),
            replica(&p, "web", 2, "sha256:w1"),
            replica(&p, "cache", 1, "sha256:c"),
        ];
        let plan = plan(
            Desired {
                project: &p,
                previous: Some(&p),
                image_ids: &images,
                file_digests: &BTreeMap::new(),
            },
            &running,
        );
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn changes_are_named() {
        let p1 = project(V1);
        let p2 = project(
            &V1.replace("A: '1'", "A: '2'")
                .replace("replicas: 2", "replicas: 3"),
        );
        let images = BTreeMap::from([("web".to_owned(), "sha256:w1".to_owned())]);
        let running = [
            replica(&p1, "web", 1, "sha256:w1"),
            replica(&p1, "web", 2, "sha256:w1"),
            replica(&p1, "db", 1, "sha256:d"),
        ];
        let plan = plan(
            Desired {
                project: &p2,
                previous: Some(&p1),
                image_ids: &images,
                file_digests: &BTreeMap::new(),
            },
            &running,
        );
        assert_eq!(
            action(&plan, "web"),
            &Action::Recreate {
                reasons: vec!["environment changed".into()]
            }
        );
        assert_eq!(action(&plan, "db"), &Action::Unchanged);
        assert_eq!(action(&plan, "cache"), &Action::Create { replicas: 1 });

        // replicas alone: scale, not recreate
        let p3 = project(&V1.replace("replicas: 2", "replicas: 3"));
        let plan = super::plan(
            Desired {
                project: &p3,
                previous: Some(&p1),
                image_ids: &images,
                file_digests: &BTreeMap::new(),
            },
            &running,
        );
        assert_eq!(action(&plan, "web"), &Action::Scale { from: 2, to: 3 });

        // a new digest behind the same tag
        let newer = BTreeMap::from([("web".to_owned(), "sha256:w2".to_owned())]);
        let plan = super::plan(
            Desired {
                project: &p1,
                previous: Some(&p1),
                image_ids: &newer,
                file_digests: &BTreeMap::new(),
            },
            &running,
        );
        assert_eq!(
            action(&plan, "web"),
            &Action::Recreate {
                reasons: vec!["image digest changed (w1 -> w2)".into()]
            }
        );
    }

    #[test]
    fn drift_and_strays_are_repaired_or_removed() {
        let p = project(V1);
        let images = BTreeMap::new();
        let mut hand_made = replica(&p, "web", 2, "sha256:w1");
        hand_made.spec_hash = "edited".into();
        let mut stopped = replica(&p, "db", 1, "sha256:d");
        stopped.state = "exited".into();
        let stray = Replica {
            service: "old".into(),
            ..replica(&p, "db", 1, "x")
        };
        let running = [
            replica(&p, "web", 1, "sha256:w1"),
            hand_made,
            stopped,
            stray,
        ];
        let plan = plan(
            Desired {
                project: &p,
                previous: Some(&p),
                image_ids: &images,
                file_digests: &BTreeMap::new(),
            },
            &running,
        );
        assert_eq!(
            action(&plan, "web"),
            &Action::Repair {
                replicas: vec![2],
                reasons: vec!["replica 2 differs from the Compose file (changed by hand?)".into()]
            }
        );
        assert_eq!(
            action(&plan, "db"),
            &Action::Repair {
                replicas: vec![1],
                reasons: vec!["replica 1 is exited".into()]
            }
        );
        assert_eq!(action(&plan, "old"), &Action::Remove { replicas: 1 });
    }

    #[test]
    fn the_hash_ignores_rollout_settings_only() {
        let a = project(V1);
        let b = project(&V1.replace(
            "deploy: {replicas: 2}",
            "deploy: {replicas: 5, update_config: {parallelism: 2}}",
        ));
        assert_eq!(spec_hash(&a.services["web"]), spec_hash(&b.services["web"]));
        let c = project(&V1.replace("image: web:1", "image: web:2"));
        assert_ne!(spec_hash(&a.services["web"]), spec_hash(&c.services["web"]));
    }
}
