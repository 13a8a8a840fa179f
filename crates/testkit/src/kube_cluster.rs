//! What [`crate::KubeApi::cluster`] keeps and does: a wire-format server's objects, not a
//! cluster. It stores what is applied (server-side apply only, as capstan sends it), lists,
//! watches and deletes them as the API documents, and stands in for the controllers and the
//! kubelet with the least that lets a rollout be followed: a workload's pods are made for its
//! template, one step per tick; a pod "runs" its container's `sh -c` script as far as `echo`
//! (its log lines) and `exit N` (a crash: `CrashLoopBackOff`, exit code N), and is ready unless
//! it crashes or its readiness probe is `false`; old pods go once every new one is ready; a
//! Deployment that does not complete within its `progressDeadlineSeconds` is marked
//! `ProgressDeadlineExceeded`. None of this is a cluster's behaviour in full: it is what the
//! API's documented objects say a cluster shows.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

/// One apply request as the server received it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// What a request gets.
pub(crate) enum Answer {
    Json(u16, Value),
    Text(u16, String),
    /// A watch of `collection` from `from` (none: every object first).
    Watch {
        collection: String,
        from: Option<u64>,
        selector: String,
        seconds: u64,
    },
}

#[derive(Default)]
pub(crate) struct State {
    rv: u64,
    seq: u64,
    objects: BTreeMap<(String, String), Value>,
    /// (version, collection, type, object)
    events: Vec<(u64, String, &'static str, Value)>,
    pub(crate) applied: Vec<Applied>,
    logs: BTreeMap<String, Vec<String>>,
    /// Workload → (the template hash it is rolling to, since when).
    rolling: BTreeMap<String, (String, Instant)>,
    /// Field manager of each object's last write.
    managers: BTreeMap<(String, String), String>,
}

fn kind_of(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "deployments" => ("Deployment", "apps/v1"),
        "statefulsets" => ("StatefulSet", "apps/v1"),
        "daemonsets" => ("DaemonSet", "apps/v1"),
        "services" => ("Service", "v1"),
        "configmaps" => ("ConfigMap", "v1"),
        "secrets" => ("Secret", "v1"),
        "persistentvolumeclaims" => ("PersistentVolumeClaim", "v1"),
        "pods" => ("Pod", "v1"),
        _ => return None,
    })
}

/// The documented `Status` of a failure.
pub(crate) fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code});
    v["details"] = details;
    v
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

fn decoded(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `labels` match a selector of `k=v`, `k==v`, `k!=v` and `k` terms.
pub(crate) fn matches(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k].as_str() == Some(v.trim_start_matches('='))
        } else {
            labels.get(term).is_some()
        }
    })
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")[..10].to_owned()
}

/// What a container does when the pretend kubelet "runs" it: its log lines, and the code it
/// exits with (none: it keeps running).
fn fate(container: &Value) -> (Vec<String>, Option<i64>) {
    let words: Vec<&str> = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let script = match words.as_slice() {
        [sh, "-c", script, ..] if sh.ends_with("sh") => *script,
        _ => return (Vec::new(), None),
    };
    let mut lines = Vec::new();
    for statement in script.split([';', '\n']).flat_map(|s| s.split("&&")) {
        let statement = statement.trim();
        if let Some(text) = statement.strip_prefix("echo ") {
            lines.push(text.trim().trim_matches(['"', '\'']).to_owned());
        } else if let Some(code) = statement.strip_prefix("exit ") {
            let code = code.trim().parse().unwrap_or(1);
            return (lines, (code != 0).then_some(code));
        }
    }
    (lines, None)
}

/// Whether a readiness probe ever passes (`false`, or a script that exits non-zero, never).
fn probe_passes(container: &Value) -> bool {
    let Some(command) = container["readinessProbe"]["exec"]["command"].as_array() else {
        return true;
    };
    let words: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
    match words.as_slice() {
        ["false" | "/bin/false"] => false,
        [sh, "-c", script] if sh.ends_with("sh") => {
            fate(&json!({"command": [sh, "-c", script]})).1.is_none()
        }
        _ => true,
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, collection: &str, kind: &'static str, object: &Value) {
        self.events
            .push((self.rv, collection.to_owned(), kind, object.clone()));
    }

    /// Stores `object` in `collection` under `name` (a new version), recording the event.
    fn put(&mut self, collection: &str, name: &str, mut object: Value) -> Value {
        let rv = self.bump();
        let key = (collection.to_owned(), name.to_owned());
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, object.clone());
        self.record(collection, kind, &object);
        object
    }

    fn remove(&mut self, collection: &str, name: &str) -> Option<Value> {
        let object = self
            .objects
            .remove(&(collection.to_owned(), name.to_owned()))?;
        self.bump();
        self.record(collection, "DELETED", &object);
        Some(object)
    }

    /// The objects of `collection` whose labels match `selector`.
    pub(crate) fn list(&self, collection: &str, selector: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((c, _), o)| c == collection && matches(selector, &o["metadata"]["labels"]))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The events of `collection` after version `after` matching `selector`.
    pub(crate) fn events_after(
        &self,
        collection: &str,
        after: u64,
        selector: &str,
    ) -> Vec<(u64, String)> {
        self.events
            .iter()
            .filter(|(rv, c, _, o)| {
                *rv > after && c == collection && matches(selector, &o["metadata"]["labels"])
            })
            .map(|(rv, _, kind, o)| (*rv, json!({"type": kind, "object": o}).to_string() + "\n"))
            .collect()
    }

    pub(crate) fn version(&self) -> u64 {
        self.rv
    }

    /// Seeds an object as another field manager wrote it (to see capstan take it over).
    pub(crate) fn seed(&mut self, path: &str, manager: &str, object: Value) {
        let Some((collection, Some(name), _)) = split(path) else {
            panic!("{path}: not an object's path");
        };
        self.managers
            .insert((collection.clone(), name.clone()), manager.to_owned());
        self.put(&collection, &name, object);
    }

    /// Answers one request.
    pub(crate) fn answer(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> Option<Answer> {
        let (collection, name, sub) = split(path)?;
        let resource = collection.rsplit('/').next().unwrap_or_default();
        let (kind, api_version) = kind_of(resource)?;
        let selector = decoded(query_value(query, "labelSelector").unwrap_or_default());
        let not_found = |name: &str| {
            Answer::Json(
                404,
                status(
                    404,
                    "NotFound",
                    &format!("{resource} \"{name}\" not found"),
                    json!({"name": name, "kind": resource}),
                ),
            )
        };
        Some(match (method, name, sub.as_deref()) {
            ("GET", None, _) if query_value(query, "watch") == Some("true") => Answer::Watch {
                collection,
                from: query_value(query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0),
                selector,
                seconds: query_value(query, "timeoutSeconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(290),
            },
            ("GET", None, _) => Answer::Json(
                200,
                json!({"kind": format!("{kind}List"), "apiVersion": api_version,
                       "metadata": {"resourceVersion": self.rv.to_string()},
                       "items": self.list(&collection, &selector)}),
            ),
            ("GET", Some(name), Some("log")) => {
                let Some(pod) = self.objects.get(&(collection.clone(), name.clone())) else {
                    return Some(not_found(&name));
                };
                let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    .as_str()
                    .map(str::to_owned);
                let previous = query_value(query, "previous") == Some("true");
                if let (Some(reason), false) = (waiting, previous) {
                    return Some(Answer::Json(
                        400,
                        status(
                            400,
                            "BadRequest",
                            &format!(
                                "container \"{}\" in pod \"{name}\" is waiting to start: {reason}",
                                pod["spec"]["containers"][0]["name"]
                                    .as_str()
                                    .unwrap_or_default()
                            ),
                            json!({}),
                        ),
                    ));
                }
                let lines = self.logs.get(&name).cloned().unwrap_or_default();
                let tail = query_value(query, "tailLines")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(usize::MAX);
                let from = lines.len().saturating_sub(tail);
                let mut text = lines[from..].join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                Answer::Text(200, text)
            }
            ("GET", Some(name), None) => {
                match self.objects.get(&(collection.clone(), name.clone())) {
                    Some(o) => Answer::Json(200, o.clone()),
                    None => not_found(&name),
                }
            }
            ("PATCH", Some(name), None) => {
                self.apply(&collection, &name, kind, query, content_type, body)
            }
            ("DELETE", Some(name), None) => match self.remove(&collection, &name) {
                Some(o) => {
                    self.managers.remove(&(collection.clone(), name.clone()));
                    self.collect_garbage(&o);
                    Answer::Json(200, o)
                }
                None => not_found(&name),
            },
            _ => Answer::Json(
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    &format!("{method} is not supported on {path}"),
                    json!({}),
                ),
            ),
        })
    }

    fn apply(
        &mut self,
        collection: &str,
        name: &str,
        kind: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> Answer {
        let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
            return Answer::Json(
                400,
                status(400, "BadRequest", "the body is not JSON", json!({})),
            );
        };
        self.applied.push(Applied {
            path: format!("{collection}/{name}"),
            query: query.to_owned(),
            content_type: content_type.to_owned(),
            body: object.clone(),
        });
        if content_type != "application/apply-patch+yaml" {
            return Answer::Json(
                415,
                status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})"
                    ),
                    json!({}),
                ),
            );
        }
        let Some(manager) = query_value(query, "fieldManager") else {
            return Answer::Json(
                422,
                status(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    json!({}),
                ),
            );
        };
        let key = (collection.to_owned(), name.to_owned());
        let force = query_value(query, "force") == Some("true");
        if let Some(owner) = self.managers.get(&key)
            && owner != manager
            && !force
        {
            return Answer::Json(
                409,
                status(
                    409,
                    "Conflict",
                    &format!("Apply failed with 1 conflict: conflict with \"{owner}\": .spec"),
                    json!({"causes": [{"reason": "FieldManagerConflict", "message": format!("conflict with \"{owner}\""), "field": ".spec"}]}),
                ),
            );
        }
        if object["kind"].as_str() != Some(kind)
            || object["metadata"]["name"].as_str() != Some(name)
        {
            return Answer::Json(
                400,
                status(
                    400,
                    "BadRequest",
                    "the kind and name of the body do not match the path",
                    json!({}),
                ),
            );
        }
        let before = self.objects.get(&key).cloned();
        if let Some(b) = &before {
            if b["immutable"] == json!(true)
                && (b["data"] != object["data"] || b["stringData"] != object["stringData"])
            {
                return Answer::Json(
                    422,
                    status(
                        422,
                        "Invalid",
                        &format!(
                            "{kind} \"{name}\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
                        ),
                        json!({}),
                    ),
                );
            }
            for k in ["uid", "creationTimestamp", "generation"] {
                object["metadata"][k] = b["metadata"][k].clone();
            }
            if b.get("status").is_some() {
                object["status"] = b["status"].clone();
            }
            if b["spec"] != object["spec"] {
                let g = b["metadata"]["generation"].as_i64().unwrap_or(1);
                object["metadata"]["generation"] = json!(g + 1);
            }
            if kind == "Secret" && object.get("stringData").is_some() {
                object["data"] = b["data"].clone();
            }
        } else {
            self.seq += 1;
            object["metadata"]["uid"] = json!(format!("0000-{:08}", self.seq));
            object["metadata"]["creationTimestamp"] = json!(now());
            object["metadata"]["generation"] = json!(1);
        }
        if let Some(data) = object
            .get_mut("stringData")
            .and_then(Value::as_object_mut)
            .map(std::mem::take)
        {
            use base64::Engine as _;
            let encoded: serde_json::Map<String, Value> = data
                .into_iter()
                .map(|(k, v)| {
                    let text = v.as_str().unwrap_or_default().as_bytes().to_vec();
                    (
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    )
                })
                .collect();
            object["data"] = Value::Object(encoded);
            object.as_object_mut().map(|o| o.remove("stringData"));
        }
        object["metadata"]["managedFields"] =
            json!([{"manager": manager, "operation": "Apply", "apiVersion": object["apiVersion"]}]);
        self.managers.insert(key, manager.to_owned());
        let stored = self.put(collection, name, object);
        Answer::Json(if before.is_some() { 200 } else { 201 }, stored)
    }

    /// A workload's pods go with it.
    fn collect_garbage(&mut self, owner: &Value) {
        let uid = owner["metadata"]["uid"].clone();
        let pods: Vec<(String, String)> = self
            .objects
            .iter()
            .filter(|((c, _), o)| {
                c.ends_with("/pods") && o["metadata"]["ownerReferences"][0]["uid"] == uid
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (c, n) in pods {
            self.remove(&c, &n);
            self.logs.remove(&n);
        }
    }

    /// One step of every workload's controller and of the kubelet.
    pub(crate) fn tick(&mut self) {
        let workloads: Vec<((String, String), Value)> = self
            .objects
            .iter()
            .filter(|((c, _), _)| {
                c.ends_with("/deployments")
                    || c.ends_with("/statefulsets")
                    || c.ends_with("/daemonsets")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((collection, name), w) in workloads {
            self.reconcile(&collection, &name, &w);
        }
    }

    fn reconcile(&mut self, collection: &str, name: &str, w: &Value) {
        let namespace = collection
            .split('/')
            .rev()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let pods_at = format!("/api/v1/namespaces/{namespace}/pods");
        let kind = w["kind"].as_str().unwrap_or_default().to_owned();
        let template = &w["spec"]["template"];
        let hash = fnv(&template.to_string());
        let want = if kind == "DaemonSet" {
            1
        } else {
            usize::try_from(w["spec"]["replicas"].as_u64().unwrap_or(1)).unwrap_or(1)
        };
        let uid = w["metadata"]["uid"].clone();
        let mine = self.owned(&pods_at, &uid);
        let is_new = |p: &Value| p["metadata"]["labels"]["pod-template-hash"] == json!(hash);
        let ready = |p: &Value| p["status"]["conditions"][1]["status"] == json!("True");
        let new: Vec<&Value> = mine.iter().filter(|p| is_new(p)).collect();
        let old: Vec<&Value> = mine.iter().filter(|p| !is_new(p)).collect();
        let key = format!("{collection}/{name}");
        let since = match self.rolling.get(&key) {
            Some((h, at)) if *h == hash => *at,
            _ => {
                self.rolling
                    .insert(key.clone(), (hash.clone(), Instant::now()));
                Instant::now()
            }
        };
        // the kubelet: a pending pod starts
        if let Some(p) = new
            .iter()
            .find(|p| p["status"]["phase"] == json!("Pending"))
        {
            let started = self.start(p);
            let pod_name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.put(&pods_at, &pod_name, started);
        } else if new.len() < want {
            // a stop-first workload (a StatefulSet, a DaemonSet) takes its old pod out first
            if kind != "Deployment"
                && let Some(o) = old.first()
            {
                let n = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.remove(&pods_at, &n);
                self.logs.remove(&n);
            } else {
                let pod_name = if kind == "StatefulSet" {
                    format!("{name}-{}", new.len())
                } else {
                    self.seq += 1;
                    format!("{name}-{hash}-{:05}", self.seq)
                };
                let pod = self.pod(&namespace, &pod_name, w, &hash);
                self.put(&pods_at, &pod_name, pod);
            }
        } else if new.iter().filter(|p| ready(p)).count() >= want && !old.is_empty() {
            // every new pod ready: the old ones go
            for o in &old {
                let n = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.remove(&pods_at, &n);
                self.logs.remove(&n);
            }
        } else if new.len() > want {
            let n = new[want..][0]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.remove(&pods_at, &n);
            self.logs.remove(&n);
        }
        // the workload's status, from its pods now
        let pods = self.owned(&pods_at, &uid);
        let total = pods.len();
        let updated = pods.iter().filter(|p| is_new(p)).count();
        let ready_all = pods.iter().filter(|p| ready(p)).count();
        let ready_new = pods.iter().filter(|p| is_new(p) && ready(p)).count();
        let complete = updated == want && ready_new == want && total == want;
        let generation = w["metadata"]["generation"].clone();
        let status = match kind.as_str() {
            "Deployment" => {
                let deadline = w["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600);
                let progressing = if complete {
                    json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                           "message": format!("ReplicaSet \"{name}-{hash}\" has successfully progressed.")})
                } else if since.elapsed().as_secs() >= deadline {
                    json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                           "message": format!("ReplicaSet \"{name}-{hash}\" has timed out progressing.")})
                } else {
                    json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                           "message": format!("ReplicaSet \"{name}-{hash}\" is progressing.")})
                };
                json!({"observedGeneration": generation, "replicas": total, "updatedReplicas": updated,
                       "readyReplicas": ready_all, "availableReplicas": ready_all,
                       "unavailableReplicas": total - ready_all,
                       "conditions": [
                           {"type": "Available", "status": if ready_all >= want { "True" } else { "False" },
                            "reason": if ready_all >= want { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
                           progressing]})
            }
            "StatefulSet" => {
                json!({"observedGeneration": generation, "replicas": total, "readyReplicas": ready_all,
                       "availableReplicas": ready_all, "currentReplicas": updated, "updatedReplicas": updated,
                       "currentRevision": if complete { format!("{name}-{hash}") } else { String::new() },
                       "updateRevision": format!("{name}-{hash}")})
            }
            _ => json!({"observedGeneration": generation, "desiredNumberScheduled": 1,
                        "currentNumberScheduled": total, "numberMisscheduled": 0, "numberReady": ready_all,
                        "updatedNumberScheduled": updated, "numberAvailable": ready_all}),
        };
        if w["status"] != status {
            let mut w = w.clone();
            w["status"] = status;
            self.put(collection, name, w);
        }
    }

    /// The pods at `pods_at` the workload of `uid` owns.
    fn owned(&self, pods_at: &str, uid: &Value) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((c, _), o)| {
                c == pods_at && o["metadata"]["ownerReferences"][0]["uid"] == *uid
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// A new pod of workload `w`, pending.
    fn pod(&mut self, namespace: &str, name: &str, w: &Value, hash: &str) -> Value {
        let template = &w["spec"]["template"];
        let mut labels = template["metadata"]["labels"].clone();
        labels["pod-template-hash"] = json!(hash);
        let mut spec = template["spec"].clone();
        spec["nodeName"] = json!("node-1");
        self.seq += 1;
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("0000-{:08}", self.seq),
                "creationTimestamp": now(), "labels": labels,
                "annotations": template["metadata"]["annotations"].clone(),
                "ownerReferences": [{"apiVersion": w["apiVersion"], "kind": w["kind"],
                    "name": w["metadata"]["name"], "uid": w["metadata"]["uid"], "controller": true}]},
            "spec": spec,
            "status": {"phase": "Pending", "hostIP": "10.0.0.1",
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
                "containerStatuses": spec["containers"].as_array().into_iter().flatten().map(|c| json!({
                    "name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": "ContainerCreating"}}})).collect::<Vec<_>>()}
        })
    }

    /// The pod as the kubelet shows it once it ran its container.
    fn start(&mut self, pod: &Value) -> Value {
        let mut pod = pod.clone();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let container = pod["spec"]["containers"][0].clone();
        let (lines, exit) = fate(&container);
        let image = container["image"].as_str().unwrap_or_default();
        // what containerd reports: the repository and the digest it pulled
        let image_id = match image.split_once('@') {
            Some((named, digest)) => {
                let repo = named
                    .rsplit_once(':')
                    .filter(|(_, tag)| !tag.contains('/'))
                    .map_or(named, |(r, _)| r);
                format!("{repo}@{digest}")
            }
            None => String::new(),
        };
        let started = now();
        let ready = exit.is_none() && probe_passes(&container);
        let state = match exit {
            Some(code) => json!({
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": format!("back-off 10s restarting failed container={} pod={name}", container["name"].as_str().unwrap_or_default())}},
                "lastState": {"terminated": {"exitCode": code, "reason": "Error",
                    "startedAt": started, "finishedAt": started}},
                "restartCount": 2}),
            None => json!({"state": {"running": {"startedAt": started}}, "restartCount": 0}),
        };
        let mut status = json!({"name": container["name"], "image": image, "imageID": image_id,
                                "ready": ready, "started": exit.is_none()});
        for (k, v) in state.as_object().into_iter().flatten() {
            status[k] = v.clone();
        }
        pod["status"]["phase"] = json!("Running");
        pod["status"]["startTime"] = json!(started);
        pod["status"]["podIP"] = json!("10.244.0.7");
        pod["status"]["conditions"][1]["status"] = json!(if ready { "True" } else { "False" });
        pod["status"]["containerStatuses"] = json!([status]);
        self.logs.insert(name, lines);
        pod
    }
}

/// `/api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]]` or `/apis/G/V/namespaces/...`: the
/// collection's path, the name, the subresource.
fn split(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = parts.iter().position(|p| *p == "namespaces")?;
    let collection = parts.get(..at + 3)?;
    Some((
        format!("/{}", collection.join("/")),
        parts.get(at + 3).map(|s| (*s).to_owned()),
        parts.get(at + 4).map(|s| (*s).to_owned()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_run_as_far_as_its_echoes_and_exit() {
        let c = json!({"command": ["sh", "-c", "echo 'config missing'; exit 3"]});
        assert_eq!(fate(&c), (vec!["config missing".to_owned()], Some(3)));
        let c = json!({"command": ["httpd", "-f"]});
        assert_eq!(fate(&c), (Vec::new(), None));
        assert!(!probe_passes(
            &json!({"readinessProbe": {"exec": {"command": ["false"]}}})
        ));
        assert!(probe_passes(
            &json!({"readinessProbe": {"exec": {"command": ["true"]}}})
        ));
        assert!(matches("a=b,c", &json!({"a": "b", "c": "x"})));
        assert!(!matches("a=b", &json!({"a": "c"})));
        assert_eq!(
            split("/apis/apps/v1/namespaces/apps/deployments/shop-web"),
            Some((
                "/apis/apps/v1/namespaces/apps/deployments".to_owned(),
                Some("shop-web".to_owned()),
                None
            ))
        );
    }
}
