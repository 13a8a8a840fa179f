//! A real registry of the test's own (Debian's `docker-registry`, the CNCF distribution
//! registry): its own storage and port on 127.0.0.1, optionally with basic auth (a bcrypt
//! htpasswd file) and notifications. Its access log holds every request it served, so a test
//! can count exactly what a client asked for. Images are put in through the registry API
//! itself (blob uploads and manifest PUTs), so a test can make any manifest or index it needs.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;
use tokio::process::{Child, Command};

const BINARY: &str = "/usr/bin/docker-registry";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// How to set up the registry.
#[derive(Debug, Default, Clone)]
pub struct RegistryOptions {
    /// Basic auth with this user and password.
    pub user: Option<(String, String)>,
    /// Notifications POSTed to this URL.
    pub notify: Option<String>,
}

/// One request as the access log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    _child: Child,
    http: reqwest::Client,
    auth: Option<String>,
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

impl Registry {
    /// Starts a registry and waits until it answers `/v2/`.
    pub async fn start(options: RegistryOptions) -> Self {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: run the tests with scripts/test, which installs docker-registry"
        );
        let dir = tempfile::Builder::new()
            .prefix("capt-registry-")
            .tempdir()
            .unwrap();
        let port = crate::free_port();
        let root = dir.path().display().to_string();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {root}/storage\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
        );
        let mut auth = None;
        if let Some((user, password)) = &options.user {
            let hash = bcrypt::hash(password, 4).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: capstan-test\n    path: {root}/htpasswd\n"
            );
            auth = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ));
        }
        if let Some(url) = &options.notify {
            let _ = write!(
                config,
                "notifications:\n  endpoints:\n    - name: capstan\n      url: {url}\n      timeout: 2s\n      threshold: 5\n      backoff: 1s\n"
            );
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let out = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/v2/");
        crate::eventually(
            Duration::from_secs(30),
            "the registry to answer /v2/",
            || {
                let (http, url) = (http.clone(), url.clone());
                async move { http.get(url).send().await.ok().map(drop) }
            },
        )
        .await;
        Self {
            dir,
            port,
            _child: child,
            http,
            auth,
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Every request the access log shows so far (`"HEAD /v2/... HTTP/1.1" 200 0 "" "agent"`).
    pub fn requests(&self) -> Vec<Request> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut quoted = line.split('"');
                quoted.next()?;
                let request = quoted.next()?;
                let status = quoted.next()?.split_whitespace().next()?.parse().ok()?;
                quoted.next()?; // referer
                quoted.next()?;
                let user_agent = quoted.next()?.to_owned();
                let mut parts = request.split_whitespace();
                Some(Request {
                    method: parts.next()?.to_owned(),
                    path: parts.next()?.to_owned(),
                    status,
                    user_agent,
                })
            })
            .collect()
    }

    /// capstan's requests (its user agent) as `METHOD kind`: `HEAD manifests`, `GET tags`,
    /// `GET blobs`, in order.
    pub fn asked(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.user_agent.starts_with("capstan/"))
            .map(|r| {
                let kind = ["manifests", "tags", "blobs"]
                    .into_iter()
                    .find(|k| r.path.contains(&format!("/{k}/")))
                    .unwrap_or("other");
                format!("{} {kind}", r.method)
            })
            .collect()
    }

    /// [`Registry::asked`] since the last call that passed the same `seen`.
    pub fn asked_since(&self, seen: &mut usize) -> Vec<String> {
        let all = self.asked();
        let new = all[(*seen).min(all.len())..].to_vec();
        *seen = all.len();
        new
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => req.header("authorization", a),
            None => req,
        }
    }

    /// Uploads a blob (monolithic); returns its digest.
    pub async fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let start = self
            .with_auth(
                self.http
                    .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.host())),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), 202, "{}", start.text().await.unwrap());
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let mut url = reqwest::Url::parse(&format!("http://{}", self.host()))
            .unwrap()
            .join(&location)
            .unwrap();
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .with_auth(self.http.put(url))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
        digest
    }

    /// PUTs a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .with_auth(self.http.put(format!(
                "http://{}/v2/{repo}/manifests/{reference}",
                self.host()
            )))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        sha256(body)
    }

    /// The manifest of an image of no layers for `architecture`, whose config (uploaded)
    /// holds `nonce`: a different nonce, a different digest.
    async fn image(&self, repo: &str, architecture: &str, nonce: &str) -> Vec<u8> {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": architecture, "os": "linux",
            "config": {"Labels": {"nonce": nonce}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_digest = self.put_blob(repo, &config).await;
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [],
        }))
        .unwrap()
    }

    /// Tags a single-platform (amd64) image whose content is `nonce`; returns its digest.
    pub async fn push(&self, repo: &str, tag: &str, nonce: &str) -> String {
        let manifest = self.image(repo, "amd64", nonce).await;
        self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await
    }

    /// Tags an OCI index of one image per `(architecture, nonce)`, plus an attestation entry
    /// whose content is `attestation`; returns the index digest and the children's digests.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, &str)],
        attestation: &str,
    ) -> (String, Vec<String>) {
        let mut entries = Vec::new();
        let mut children = Vec::new();
        for (arch, nonce) in platforms {
            let manifest = self.image(repo, arch, nonce).await;
            let digest = self
                .put_manifest(repo, &sha256(&manifest), OCI_MANIFEST, &manifest)
                .await;
            entries.push(serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
                "platform": {"os": "linux", "architecture": arch},
            }));
            children.push(digest);
        }
        let manifest = self.image(repo, "unknown", attestation).await;
        let att = self
            .put_manifest(repo, &sha256(&manifest), OCI_MANIFEST, &manifest)
            .await;
        entries.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": att, "size": manifest.len(),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": children[0]},
        }));
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
        }))
        .unwrap();
        let digest = self.put_manifest(repo, tag, OCI_INDEX, &index).await;
        (digest, children)
    }
}
