//! A Kubernetes API server's wire format, not a cluster: no API server can run on this
//! machine, so tests talk to this HTTP server, which answers as the API documents it (its
//! example responses) and records every request it receives for the test to check. Beyond
//! `/version`, a test scripts the answers it needs (a pod list, a watch stream, a 410) in the
//! order they are asked for.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

pub use crate::kube_cluster::Applied;
use crate::kube_cluster::{Answer, State};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string (`watch=true&resourceVersion=100&...`), empty when none.
    pub query: String,
    pub authorization: Option<String>,
}

/// A scripted answer: to the next request for `path` that is (`watch`) or is not a watch.
#[derive(Debug, Clone)]
struct Reply {
    path: String,
    watch: bool,
    status: u16,
    body: String,
}

/// The API server of a test: answers `/version` with the documented example, or with the
/// documented 403 Status when `forbid` is set.
pub struct KubeApi {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Vec<Reply>>>,
    /// With [`KubeApi::cluster`]: the objects it keeps.
    state: Option<Arc<Mutex<State>>>,
}

const VERSION: &str = r#"{
  "major": "1",
  "minor": "28",
  "gitVersion": "v1.28.3",
  "gitCommit": "a8a1abc25cad87333840cd7d54be2efaf31a3177",
  "gitTreeState": "clean",
  "buildDate": "2023-10-18T11:33:18Z",
  "goVersion": "go1.20.10",
  "compiler": "gc",
  "platform": "linux/amd64"
}"#;

const FORBIDDEN: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"system:serviceaccount:apps:capstan\" cannot get path \"/version\"","reason":"Forbidden","details":{},"code":403}"#;

/// RBAC's documented 403 for a request: the verb, the resource and its group, the namespace.
fn forbidden(method: &str, path: &str, query: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = parts.iter().position(|p| *p == "namespaces").unwrap_or(0);
    let group = if parts.first() == Some(&"apis") {
        parts.get(1).copied().unwrap_or_default()
    } else {
        ""
    };
    let namespace = parts.get(at + 1).copied().unwrap_or_default();
    let resource = parts.get(at + 2).copied().unwrap_or_default();
    let name = parts.get(at + 3).copied();
    let verb = match (method, name) {
        ("GET", None) if query.contains("watch=true") => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "create",
    };
    let user = "system:serviceaccount:apps:capstan";
    let message = format!(
        "{resource}{} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{namespace}\"",
        name.map(|n| format!(" \"{n}\"")).unwrap_or_default()
    );
    crate::kube_cluster::status(
        403,
        "Forbidden",
        &message,
        serde_json::json!({"name": name.unwrap_or_default(), "kind": resource}),
    )
    .to_string()
}

impl KubeApi {
    /// Starts it on a loopback port; with `forbid`, every request is answered 403 as RBAC
    /// answers.
    pub async fn start(forbid: bool) -> Self {
        Self::serve(forbid, None).await
    }

    /// A server that also keeps what is applied to it and stands in for the controllers and
    /// the kubelet (see `kube_cluster`): what a rollout can be followed on. Scripted answers
    /// still come first.
    pub async fn cluster() -> Self {
        let state: Arc<Mutex<State>> = Arc::default();
        let ticking = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                ticking.lock().unwrap().tick();
            }
        });
        Self::serve(false, Some(state)).await
    }

    async fn serve(forbid: bool, state: Option<Arc<Mutex<State>>>) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Mutex<Vec<Reply>>> = Arc::default();
        let (log, replies, kept) = (Arc::clone(&seen), Arc::clone(&script), state.clone());
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (log, replies, kept) = (Arc::clone(&log), Arc::clone(&replies), kept.clone());
                async move {
                    let query = uri.query().unwrap_or_default().to_owned();
                    let watch = query.split('&').any(|p| p == "watch=true");
                    log.lock().unwrap().push(Seen {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        query: query.clone(),
                        authorization: headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned()),
                    });
                    let json = [("content-type", "application/json")];
                    let scripted = {
                        let mut replies = replies.lock().unwrap();
                        replies
                            .iter()
                            .position(|r| r.path == uri.path() && r.watch == watch)
                            .map(|i| replies.remove(i))
                    };
                    if let Some(r) = scripted {
                        let status = StatusCode::from_u16(r.status).unwrap();
                        return (status, json, r.body).into_response();
                    }
                    if let Some(kept) = kept {
                        let content_type = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let answer = kept.lock().unwrap().answer(
                            method.as_str(),
                            uri.path(),
                            &query,
                            &content_type,
                            &body,
                        );
                        if let Some(answer) = answer {
                            return respond(&kept, answer);
                        }
                    }
                    match (uri.path(), forbid) {
                        ("/version", false) => (StatusCode::OK, json, VERSION).into_response(),
                        ("/version", true) => {
                            (StatusCode::FORBIDDEN, json, FORBIDDEN).into_response()
                        }
                        (path, true) => (
                            StatusCode::FORBIDDEN,
                            json,
                            forbidden(method.as_str(), path, &query),
                        )
                            .into_response(),
                        _ => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            seen,
            script,
            state,
        }
    }

    fn state(&self) -> &Arc<Mutex<State>> {
        self.state
            .as_ref()
            .expect("a KubeApi started with KubeApi::cluster keeps objects")
    }

    /// Every apply request it received, in order.
    pub fn applied(&self) -> Vec<Applied> {
        self.state().lock().unwrap().applied.clone()
    }

    /// The objects at `collection` (`/apis/apps/v1/namespaces/apps/deployments`) whose labels
    /// match `selector` (`k=v,k2`).
    pub fn objects(&self, collection: &str, selector: &str) -> Vec<serde_json::Value> {
        self.state().lock().unwrap().list(collection, selector)
    }

    /// Stores `object` at `path` as field manager `manager` wrote it.
    pub fn seed(&self, path: &str, manager: &str, object: serde_json::Value) {
        self.state().lock().unwrap().seed(path, manager, object);
    }
}

/// An answer of the kept objects as a response; a watch streams events as they happen.
fn respond(state: &Arc<Mutex<State>>, answer: Answer) -> axum::response::Response {
    let json = [("content-type", "application/json")];
    match answer {
        Answer::Json(code, v) => {
            (StatusCode::from_u16(code).unwrap(), json, v.to_string()).into_response()
        }
        Answer::Text(code, t) => (
            StatusCode::from_u16(code).unwrap(),
            [("content-type", "text/plain")],
            t,
        )
            .into_response(),
        Answer::Watch {
            collection,
            from,
            selector,
            seconds,
        } => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
            let state = Arc::clone(state);
            tokio::spawn(async move {
                let end = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
                let mut after = match from {
                    Some(v) => v,
                    None => {
                        // every object as ADDED first, then what changes
                        let (objects, now) = {
                            let s = state.lock().unwrap();
                            (s.list(&collection, &selector), s.version())
                        };
                        for o in objects {
                            let line = serde_json::json!({"type": "ADDED", "object": o})
                                .to_string()
                                + "\n";
                            if tx.send(Ok(line)).await.is_err() {
                                return;
                            }
                        }
                        now
                    }
                };
                while tokio::time::Instant::now() < end {
                    let events = state
                        .lock()
                        .unwrap()
                        .events_after(&collection, after, &selector);
                    for (rv, line) in events {
                        after = rv;
                        if tx.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            });
            let body = axum::body::Body::from_stream(tokio_stream_of(rx));
            (StatusCode::OK, json, body).into_response()
        }
    }
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl KubeApi {
    /// Answers the next request for `path` (a watch, with `watch`) with `status` and `body`
    /// (a watch stream: one JSON event per line, the stream ending with the body).
    pub fn reply(&self, path: &str, watch: bool, status: u16, body: impl Into<String>) {
        self.script.lock().unwrap().push(Reply {
            path: path.to_owned(),
            watch,
            status,
            body: body.into(),
        });
    }

    /// The requests it received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A kubeconfig at `dir/kubeconfig` with two contexts on this server: `lab` (namespace
    /// `apps`, token `t0ken`) and `other` (the current one, no namespace).
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        kubeconfig(dir, &self.url)
    }
}

/// A kubeconfig at `dir/kubeconfig` with two contexts on `server`: `lab` (namespace `apps`, token `t0ken`) and
/// `other`.
pub fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
users:
- name: deployer
  user:
    token: t0ken
contexts:
- name: lab
  context:
    cluster: lab
    user: deployer
    namespace: apps
- name: other
  context:
    cluster: lab
    user: deployer
current-context: other
"
        ),
    )
    .unwrap();
    path
}

/// Validates `files` (Kubernetes objects as JSON or YAML) with PyPI's `kubernetes-validate
/// --strict` against Kubernetes `version` (scripts/test installs it and sets
/// `CAPSTAN_TEST_KUBERNETES_VALIDATE`); panics with what it said when one is not valid.
pub fn kubernetes_validate_files(files: &[std::path::PathBuf], version: &str) {
    let validate = std::env::var("CAPSTAN_TEST_KUBERNETES_VALIDATE").expect(
        "CAPSTAN_TEST_KUBERNETES_VALIDATE is not set: run the tests with scripts/test, which installs kubernetes-validate",
    );
    let out = std::process::Command::new(validate)
        .args(["--strict", "--quiet", "-k", version])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "not valid for Kubernetes {version}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`kubernetes_validate_files`] for `objects`, against each of `versions`.
pub fn kubernetes_validate(objects: &[serde_json::Value], versions: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.path().join(format!("{i}.json"));
            std::fs::write(&path, o.to_string()).unwrap();
            path
        })
        .collect();
    for version in versions {
        kubernetes_validate_files(&files, version);
    }
}
