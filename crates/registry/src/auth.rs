//! Registry authentication: the `WWW-Authenticate` challenge, and credentials from capstan's
//! config or from Docker's (`~/.docker/config.json`: `auths`, `credsStore`, `credHelpers`, the
//! last two through the `docker-credential-*` helper programs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan_model::{CredentialOrigin, RegistryAuth, RegistryLogin};

use base64::Engine as _;
use serde::Deserialize;

use crate::Error;
use crate::logins::Logins;
use crate::reference::{DOCKER_HUB, Reference};

/// A user name and its password or token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"***")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: secret.into(),
        }
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

/// What a registry asked for in its `401`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: the scheme is case-insensitive, the parameters are
/// `key="value"` (quoted values may hold commas) or `key=token`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => v.extend(chars.next()),
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>()
        };
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

/// Docker's client config, as much of it as names credentials.
#[derive(Debug, Default, Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// What a `docker-credential-*` helper answers to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Credentials found for a registry, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub credentials: Credentials,
    pub origin: CredentialOrigin,
    /// The helper's name, or the config file's path.
    pub detail: Option<String>,
}

impl Found {
    /// Where they came from, as messages say it.
    pub fn describe(&self) -> String {
        match &self.detail {
            Some(d) => format!("{} ({d})", self.origin.describe()),
            None => self.origin.describe().to_owned(),
        }
    }
}

/// Where credentials for a registry come from, in order: `capstan registries login`, capstan's
/// config, then Docker's config file (its `credHelpers` entry for the registry, its
/// `credsStore`, its `auths`). One source serves every pull, build, scan and registry check.
#[derive(Debug, Default)]
pub struct CredentialSource {
    /// What `capstan registries login` kept.
    pub logins: Option<Arc<Logins>>,
    /// From capstan's config, by registry (`docker.io`, `127.0.0.1:5000`).
    pub configured: HashMap<String, Credentials>,
    /// Docker's config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// Where the helper programs are looked for (default: `$PATH`).
    pub helper_dirs: Option<Vec<PathBuf>>,
}

/// The key a config names a registry by, as capstan names it (`https://index.docker.io/v1/`
/// is `docker.io`; a scheme and a path are dropped).
fn registry_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        h => h.to_owned(),
    }
}

impl CredentialSource {
    /// Where Docker's config file is (`$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`); read at each lookup, so a `docker login` after capstan started
    /// counts.
    pub fn default_docker_config() -> Option<PathBuf> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
        Some(dir.join("config.json"))
    }

    /// Credentials for `registry` (`docker.io`, `host:port`), if any are known.
    ///
    /// # Errors
    /// Docker's config is unreadable, or its helper failed (not: has nothing for the registry).
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        Ok(self.find(registry).await?.map(|f| f.credentials))
    }

    /// Credentials for `registry` and where they came from, if any are known.
    ///
    /// # Errors
    /// As [`CredentialSource::lookup`].
    pub async fn find(&self, registry: &str) -> Result<Option<Found>, Error> {
        if let Some(logins) = &self.logins
            && let Some(c) = logins.get(registry)?
        {
            return Ok(Some(Found {
                credentials: c,
                origin: CredentialOrigin::Capstan,
                detail: None,
            }));
        }
        if let Some(c) = self.configured.get(registry) {
            return Ok(Some(Found {
                credentials: c.clone(),
                origin: CredentialOrigin::Config,
                detail: None,
            }));
        }
        let Some((path, file)) = self.docker_config_file().await? else {
            return Ok(None);
        };
        let helper = file
            .cred_helpers
            .iter()
            .find(|(k, _)| registry_key(k) == registry)
            .map(|(_, h)| h.clone())
            .or(file.creds_store.clone());
        if let Some(helper) = helper
            && let Some(c) = self.run_helper(&helper, registry).await?
        {
            return Ok(Some(Found {
                credentials: c,
                origin: CredentialOrigin::Helper,
                detail: Some(format!("docker-credential-{helper}")),
            }));
        }
        for (key, entry) in &file.auths {
            if registry_key(key) != registry {
                continue;
            }
            if let Some(c) = entry.credentials(&path, key)? {
                return Ok(Some(Found {
                    credentials: c,
                    origin: CredentialOrigin::DockerConfig,
                    detail: Some(path.display().to_string()),
                }));
            }
        }
        Ok(None)
    }

    /// What the engine should send to pull `image` (by reference): the credentials for its
    /// registry, if any are known, and where they came from.
    ///
    /// # Errors
    /// `image` is not a reference, or as [`CredentialSource::lookup`].
    pub async fn for_image(&self, image: &str) -> Result<Option<(RegistryAuth, Found)>, Error> {
        self.for_registry(&Reference::parse(image)?.registry).await
    }

    /// What the engine should send to `registry`, if anything is known, and where it came from.
    ///
    /// # Errors
    /// As [`CredentialSource::lookup`].
    pub async fn for_registry(
        &self,
        registry: &str,
    ) -> Result<Option<(RegistryAuth, Found)>, Error> {
        let registry = registry.to_owned();
        Ok(self.find(&registry).await?.map(|found| {
            let auth = RegistryAuth {
                registry,
                username: found.credentials.username.clone(),
                password: found.credentials.secret().to_owned(),
            };
            (auth, found)
        }))
    }

    /// What the engine should send to each registry a Dockerfile's `FROM` lines pull from
    /// (`args` resolve `${ARG}` in them): the credentials known, one per registry.
    ///
    /// # Errors
    /// As [`CredentialSource::lookup`].
    pub async fn for_dockerfile(
        &self,
        dockerfile: &str,
        args: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<RegistryAuth>, Error> {
        let mut registries: Vec<String> = crate::dockerfile_bases(dockerfile, args)
            .into_iter()
            .map(|r| r.registry)
            .collect();
        registries.sort();
        registries.dedup();
        let mut out = Vec::new();
        for registry in registries {
            out.extend(self.for_registry(&registry).await?.map(|(auth, _)| auth));
        }
        Ok(out)
    }

    /// Docker's config file and its path, when there is one.
    async fn docker_config_file(&self) -> Result<Option<(PathBuf, DockerConfigFile)>, Error> {
        let Some(path) = &self.docker_config else {
            return Ok(None);
        };
        let text = match tokio::fs::read_to_string(path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Credentials(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let file: DockerConfigFile = serde_json::from_str(&text).map_err(|e| {
            Error::Credentials(format!(
                "{} is not Docker's config JSON: {e}",
                path.display()
            ))
        })?;
        Ok(Some((path.clone(), file)))
    }

    /// Every registry with credentials from every origin (never a secret), the one used for
    /// each registry marked in effect. A `credsStore` helper is asked what it keeps (`list`);
    /// one that cannot answer is left out with a warning.
    ///
    /// # Errors
    /// What capstan keeps, or Docker's config, cannot be read.
    pub async fn list(&self) -> Result<Vec<RegistryLogin>, Error> {
        let mut out = Vec::new();
        if let Some(logins) = &self.logins {
            for l in logins.list()? {
                out.push(RegistryLogin {
                    registry: l.registry,
                    username: Some(l.username),
                    origin: CredentialOrigin::Capstan,
                    detail: None,
                    in_effect: false,
                    saved_at: Some(l.saved_at),
                });
            }
        }
        for (registry, c) in &self.configured {
            out.push(listed(
                registry,
                Some(&c.username),
                CredentialOrigin::Config,
                None,
            ));
        }
        if let Some((path, file)) = self.docker_config_file().await? {
            for (key, helper) in &file.cred_helpers {
                let detail = format!("docker-credential-{helper}");
                out.push(listed(
                    &registry_key(key),
                    None,
                    CredentialOrigin::Helper,
                    Some(detail),
                ));
            }
            if let Some(helper) = &file.creds_store {
                match self.list_helper(helper).await {
                    Ok(kept) => {
                        for (server, user) in kept {
                            let detail = format!("docker-credential-{helper}");
                            out.push(listed(
                                &registry_key(&server),
                                Some(&user),
                                CredentialOrigin::Helper,
                                Some(detail),
                            ));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list what the credential store keeps");
                    }
                }
            }
            for (key, entry) in &file.auths {
                if let Some(c) = entry.credentials(&path, key).ok().flatten() {
                    let detail = path.display().to_string();
                    out.push(listed(
                        &registry_key(key),
                        Some(&c.username),
                        CredentialOrigin::DockerConfig,
                        Some(detail),
                    ));
                }
            }
        }
        out.sort_by(|a, b| (&a.registry, a.origin).cmp(&(&b.registry, b.origin)));
        let mut seen = std::collections::HashSet::new();
        for l in &mut out {
            l.in_effect = seen.insert(l.registry.clone());
        }
        Ok(out)
    }

    /// `docker-credential-<helper> list`: server → user name.
    async fn list_helper(&self, helper: &str) -> Result<HashMap<String, String>, Error> {
        let program = format!("docker-credential-{helper}");
        let out = self.helper_call(helper, "list", "").await?;
        if !out.status.success() {
            return Err(Error::Credentials(format!(
                "{program} list failed: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::Credentials(format!(
                "{program} list answered something that is not its JSON: {e}"
            ))
        })
    }

    /// `docker-credential-<helper> get`, the server on stdin; "not found" is no credentials.
    async fn run_helper(&self, helper: &str, registry: &str) -> Result<Option<Credentials>, Error> {
        let program = format!("docker-credential-{helper}");
        let server = if registry == DOCKER_HUB {
            "https://index.docker.io/v1/".to_owned()
        } else {
            registry.to_owned()
        };
        let out = self.helper_call(helper, "get", &server).await?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if said.contains("credentials not found") {
                return Ok(None);
            }
            return Err(Error::Credentials(format!(
                "{program} get failed for {server}: {said}"
            )));
        }
        let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::Credentials(format!(
                "{program} answered something that is not its JSON: {e}"
            ))
        })?;
        Ok(Some(Credentials::new(answer.username, answer.secret)))
    }

    /// Runs `docker-credential-<helper> <verb>` with `input` on stdin, for at most 30 s.
    async fn helper_call(
        &self,
        helper: &str,
        verb: &str,
        input: &str,
    ) -> Result<std::process::Output, Error> {
        use tokio::io::AsyncWriteExt as _;
        let program = format!("docker-credential-{helper}");
        let path = match &self.helper_dirs {
            Some(dirs) => dirs
                .iter()
                .map(|d| d.join(&program))
                .find(|p| p.exists())
                .ok_or_else(|| {
                    Error::Credentials(format!(
                        "Docker's config names the credential helper {helper:?}, but {program} is not installed"
                    ))
                })?,
            None => PathBuf::from(&program),
        };
        let mut child = tokio::process::Command::new(&path)
            .arg(verb)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::Credentials(format!(
                    "cannot run the credential helper {program}: {e} (is it installed and on PATH?)"
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .await
                .map_err(|e| Error::Credentials(format!("{program}: {e}")))?;
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
            .await
            .map_err(|_| Error::Credentials(format!("{program} {verb} took over 30 s")))?
            .map_err(|e| Error::Credentials(format!("{program}: {e}")))
    }
}

/// A registry in a listing, not yet said to be in effect.
fn listed(
    registry: &str,
    username: Option<&str>,
    origin: CredentialOrigin,
    detail: Option<String>,
) -> RegistryLogin {
    RegistryLogin {
        registry: registry.to_owned(),
        username: username.map(str::to_owned),
        origin,
        detail,
        in_effect: false,
        saved_at: None,
    }
}

impl AuthEntry {
    /// The user and password an `auths` entry holds (`auth`, base64 of `user:password`, or
    /// both written out); `None` when it holds neither (an identity token alone).
    fn credentials(&self, path: &Path, key: &str) -> Result<Option<Credentials>, Error> {
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = || {
                Error::Credentials(format!(
                    "{}: auths.{key}.auth is not base64 of user:password",
                    path.display()
                ))
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?;
            let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials::new(user, password)));
        }
        Ok(match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        // scheme in any case, a scope holding a comma, no service
        assert_eq!(
            parse_challenge(
                r#"bearer realm="http://127.0.0.1:1/Token", scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/Token".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"BASIC realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn config_keys_name_registries() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_key("https://ghcr.io"), "ghcr.io");
    }
}
