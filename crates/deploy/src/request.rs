//! What the CLI (or the dashboard, or the ledger) hands the deploy job: the resolved model and
//! the contents of the configs and secrets it uses; and what every target requires of it.

use std::collections::BTreeMap;

use capstan_compose::Project;
use capstan_compose::model::FileObject;
use serde::{Deserialize, Serialize};

use crate::error::RequestError;
use crate::files::FileContent;
use crate::plan::fnv_hex;

/// What the CLI posts to plan or deploy: the resolved model and the contents of the configs and
/// secrets it uses (`configs/NAME`, `secrets/NAME`), read on the caller's side.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployRequest {
    /// The resolved Compose model.
    #[schema(value_type = Object)]
    pub project: Project,
    /// Config and secret contents by `configs/NAME` / `secrets/NAME`.
    #[serde(default)]
    pub files: BTreeMap<String, FileContent>,
    /// Where the model came from: file paths, content hash, git commit (free-form JSON).
    #[serde(default)]
    pub source: serde_json::Value,
    /// Pull every image before the release (`capstan deploy --pull`, `?pull=true`), as
    /// `pull_policy: always` does for one service. Asked per deploy, never kept in the ledger.
    #[serde(skip)]
    pub pull: bool,
}

impl DeployRequest {
    /// The request for a loaded project: `read` gives each config's and secret's content
    /// (`kind` is `configs` or `secrets`; `None` for one that needs none, like an external
    /// secret), and `source` says where the model came from (its hash is added as `model_hash`).
    ///
    /// # Errors
    /// The first message `read` returns, naming the object.
    pub fn from_project(
        project: Project,
        mut read: impl FnMut(&str, &str, &FileObject) -> Result<Option<FileContent>, String>,
        mut source: serde_json::Value,
    ) -> Result<Self, String> {
        let mut files = BTreeMap::new();
        for (kind, objects) in [("configs", &project.configs), ("secrets", &project.secrets)] {
            for (name, obj) in objects {
                if let Some(content) =
                    read(kind, name, obj).map_err(|e| format!("{kind}.{name}: {e}"))?
                {
                    files.insert(format!("{kind}/{name}"), content);
                }
            }
        }
        let model = serde_json::to_string(&project).unwrap_or_default();
        if let Some(map) = source.as_object_mut() {
            map.insert("model_hash".into(), fnv_hex(model.as_bytes()).into());
        }
        Ok(Self {
            project,
            files,
            source,
            pull: false,
        })
    }

    /// The app (Compose project) it deploys.
    pub fn app(&self) -> String {
        self.project.name.clone().unwrap_or_default()
    }

    /// What every target requires: file contents that decode, an image per service, the
    /// content of every config and secret a service uses.
    ///
    /// # Errors
    /// The first problem, naming the service and key.
    pub fn check(&self) -> Result<(), RequestError> {
        self.check_names()?;
        for (key, content) in &self.files {
            content.bytes().map_err(|source| RequestError::BadFile {
                key: key.clone(),
                source,
            })?;
        }
        for (name, s) in &self.project.services {
            if s.image.is_none() {
                return Err(RequestError::NoImage {
                    service: name.clone(),
                });
            }
            for (kind, refs) in [("configs", &s.configs), ("secrets", &s.secrets)] {
                for r in refs {
                    if !self.files.contains_key(&format!("{kind}/{}", r.source)) {
                        return Err(RequestError::FileNotSent {
                            service: name.clone(),
                            kind,
                            name: r.source.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl DeployRequest {
    /// Every name that becomes a path, a container's name or a label: the app's, its
    /// services', its configs' and secrets' (declared, referenced and sent).
    fn check_names(&self) -> Result<(), RequestError> {
        let bad = |key: String| move |source| RequestError::BadName { key, source };
        capstan_model::check_app_name(self.project.name.as_deref().unwrap_or_default())
            .map_err(bad("name".into()))?;
        let object = |kind: &'static str, key: String, name: &str| {
            capstan_model::check_object_name(kind, name).map_err(bad(key))
        };
        for (name, s) in &self.project.services {
            object("service", format!("services.{name}"), name)?;
            for r in &s.configs {
                object("config", format!("services.{name}.configs"), &r.source)?;
            }
            for r in &s.secrets {
                object("secret", format!("services.{name}.secrets"), &r.source)?;
            }
        }
        for name in self.project.configs.keys() {
            object("config", format!("configs.{name}"), name)?;
        }
        for name in self.project.secrets.keys() {
            object("secret", format!("secrets.{name}"), name)?;
        }
        for key in self.files.keys() {
            match key.split_once('/') {
                Some(("configs", name)) => object("config", format!("files.{key}"), name)?,
                Some(("secrets", name)) => object("secret", format!("files.{key}"), name)?,
                _ => {
                    return Err(RequestError::BadName {
                        key: format!("files.{key}"),
                        source: capstan_model::NameError {
                            kind: "file",
                            name: key.clone(),
                            why: "must be configs/NAME or secrets/NAME",
                        },
                    });
                }
            }
        }
        Ok(())
    }
}

/// Content digests of the configs and secrets in a request (never the contents themselves).
pub fn file_digests(files: &BTreeMap<String, FileContent>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), fnv_hex(&v.bytes().unwrap_or_default())))
        .collect()
}

/// Where `key` (`services.web.ports[0].host_ip`) is written, from the positions the CLI sent
/// with the request (`source.positions`): the key's own, else its nearest parent's.
pub fn position_of(source: &serde_json::Value, key: &str) -> Option<String> {
    let positions = source.get("positions")?;
    let mut k = key;
    loop {
        if let Some(p) = positions.get(k).and_then(serde_json::Value::as_str) {
            return Some(p.to_owned());
        }
        let cut = k.rfind(['.', '['])?;
        k = &k[..cut];
    }
}
