//! A Kubernetes API server's wire format, not a cluster: no API server can run on this
//! machine, so tests talk to this HTTP server, which answers as the API documents it (its
//! example responses) and records every request it receives for the test to check. Beyond
//! `/version`, a test scripts the answers it needs (a pod list, a watch stream, a 410) in the
//! order they are asked for.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
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

impl KubeApi {
    /// Starts it on a loopback port; with `forbid`, every request is answered 403 as RBAC
    /// answers.
    pub async fn start(forbid: bool) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Mutex<Vec<Reply>>> = Arc::default();
        let (log, replies) = (Arc::clone(&seen), Arc::clone(&script));
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (log, replies) = (Arc::clone(&log), Arc::clone(&replies));
            async move {
                let query = uri.query().unwrap_or_default().to_owned();
                let watch = query.split('&').any(|p| p == "watch=true");
                log.lock().unwrap().push(Seen {
                    path: uri.path().to_owned(),
                    query,
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
                match (uri.path(), forbid) {
                    ("/version", false) => (StatusCode::OK, json, VERSION).into_response(),
                    (_, true) => (StatusCode::FORBIDDEN, json, FORBIDDEN).into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen, script }
    }
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
