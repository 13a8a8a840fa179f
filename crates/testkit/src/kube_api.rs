//! A Kubernetes API server's wire format, not a cluster: no API server can run on this
//! machine, so tests talk to this HTTP server, which answers as the API documents it (its
//! example responses) and records every request it receives for the test to check.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
}

/// The API server of a test: answers `/version` with the documented example, or with the
/// documented 403 Status when `forbid` is set.
pub struct KubeApi {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
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
        let log = Arc::clone(&seen);
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(Seen {
                    path: uri.path().to_owned(),
                    authorization: headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned()),
                });
                let json = [("content-type", "application/json")];
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
        Self { url, seen }
    }
}

impl KubeApi {
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
