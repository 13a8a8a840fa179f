//! Image and container operations: what capstan's later jobs (build, release, deploy) and its
//! test fixtures ask of the engine.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, ImportImageOptions,
    PushImageOptions, RemoveContainerOptions, RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::{Engine, Error};

/// A build context: a tar archive holding a `Dockerfile` and whatever it copies.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The tar archive.
    pub tar: Bytes,
    /// Path of the Dockerfile inside it.
    pub dockerfile: String,
    /// `ARG` values.
    pub args: std::collections::BTreeMap<String, String>,
    /// The stage to build (multi-stage Dockerfiles); the last one when `None`.
    pub target: Option<String>,
    /// Labels on the image.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Credentials for the registries its `FROM` lines pull from.
    pub credentials: Vec<capstan_model::RegistryAuth>,
    /// The memory each build step may use, in bytes (none: the engine's default).
    pub memory: Option<i64>,
}

/// The engine's form of registry credentials.
fn docker_credentials(auth: &capstan_model::RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        serveraddress: Some(auth.server_address()),
        ..Default::default()
    }
}

/// Splits `repo:tag` (a registry port is not a tag); the tag defaults to `latest`.
fn split_reference(reference: &str) -> (&str, &str) {
    // by digest (the API takes it in `tag`); a tag beside the digest is dropped, as Docker does
    if let Some((name, digest)) = reference.split_once('@') {
        let name = match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => name,
        };
        return (name, digest);
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

impl Engine {
    /// Creates an image from a root filesystem tarball (`docker import`) as `repo:tag`.
    ///
    /// # Errors
    /// [`Error::Api`] when the engine rejects the archive, [`Error::Unreachable`].
    pub async fn import_rootfs(&self, rootfs: Bytes, reference: &str) -> Result<(), Error> {
        let (repo, tag) = split_reference(reference);
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        self.create_image(options, Some(rootfs), None).await
    }

    /// Pulls `reference` (`registry/repo:tag`, or by digest: `repo@sha256:...`, where a tag
    /// beside the digest is ignored), sending `auth` to its registry when given.
    ///
    /// # Errors
    /// [`Error::Api`] when the registry refuses, [`Error::Unreachable`].
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&capstan_model::RegistryAuth>,
    ) -> Result<(), Error> {
        let (repo, tag) = split_reference(reference);
        let options = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        self.create_image(options, None, auth.map(docker_credentials))
            .await
    }

    /// `POST /images/create` (pull or import) to the end of its progress stream.
    async fn create_image(
        &self,
        options: CreateImageOptions,
        body: Option<Bytes>,
        credentials: Option<DockerCredentials>,
    ) -> Result<(), Error> {
        self.client()?
            .create_image(Some(options), body.map(bollard::body_full), credentials)
            .try_collect::<Vec<_>>()
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    /// Reads a push or build progress stream to its end; an error inside it fails the call.
    async fn finish<T>(
        &self,
        stream: impl futures_util::Stream<Item = Result<T, bollard::errors::Error>>,
        mut error_of: impl FnMut(T) -> Option<String>,
    ) -> Result<(), Error> {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Some(message) = error_of(item.map_err(|e| self.classify(e))?) {
                return Err(Error::Api { status: 0, message });
            }
        }
        Ok(())
    }

    /// Pushes `reference` to its registry, sending `auth` when given.
    ///
    /// # Errors
    /// [`Error::Api`] when the registry refuses, [`Error::Unreachable`].
    pub async fn push(
        &self,
        reference: &str,
        auth: Option<&capstan_model::RegistryAuth>,
    ) -> Result<(), Error> {
        let (repo, tag) = split_reference(reference);
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let credentials = auth.map_or_else(DockerCredentials::default, docker_credentials);
        let stream = self
            .client()?
            .push_image(repo, Some(options), Some(credentials));
        self.finish(stream, |i| i.error_detail.and_then(|d| d.message))
            .await
    }

    /// Points `target` (`repo:tag`) at the image `source` (id or reference).
    ///
    /// # Errors
    /// [`Error::NotFound`] when `source` does not exist, [`Error::Unreachable`].
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), Error> {
        let (repo, tag) = split_reference(target);
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.client()?
            .tag_image(source, Some(options))
            .await
            .map_err(|e| self.classify(e))
    }

    /// Removes an image or one of its references (`docker rmi`).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`] (in use, ...), [`Error::Unreachable`].
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<(), Error> {
        let options = RemoveImageOptions {
            force,
            ..Default::default()
        };
        self.client()?
            .remove_image(name, Some(options), None)
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    /// Builds an image from a context with the classic builder and tags it `reference`.
    ///
    /// # Errors
    /// [`Error::Api`] with the builder's message when the build fails.
    pub async fn build(&self, context: BuildContext, reference: &str) -> Result<(), Error> {
        self.build_logged(context, reference, &mut |_| {}).await
    }

    /// [`Engine::build`], handing each line the builder prints (`Step 2/5 : RUN …`, the
    /// steps' output) to `line` as it comes.
    ///
    /// # Errors
    /// [`Error::Api`] with the builder's message when the build fails.
    pub async fn build_logged(
        &self,
        context: BuildContext,
        reference: &str,
        line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), Error> {
        let options = BuildImageOptions {
            memory: context.memory.map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            dockerfile: context.dockerfile,
            t: Some(reference.to_owned()),
            rm: true,
            buildargs: (!context.args.is_empty()).then(|| context.args.into_iter().collect()),
            labels: (!context.labels.is_empty()).then(|| context.labels.into_iter().collect()),
            target: context.target.unwrap_or_default(),
            ..Default::default()
        };
        let credentials = (!context.credentials.is_empty()).then(|| {
            context
                .credentials
                .iter()
                .map(|a| (a.server_address(), docker_credentials(a)))
                .collect()
        });
        let stream =
            self.client()?
                .build_image(options, credentials, Some(bollard::body_full(context.tar)));
        self.finish(stream, |i| {
            if let Some(text) = i.stream.as_deref().or(i.status.as_deref()) {
                for l in text.lines().filter(|l| !l.trim().is_empty()) {
                    line(l);
                }
            }
            i.error_detail.and_then(|d| d.message)
        })
        .await
    }

    /// Exports images (by reference, so the archive keeps the tags) as a `docker save` archive.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unreachable`].
    pub async fn save(&self, names: &[&str]) -> Result<Bytes, Error> {
        let chunks: Vec<Bytes> = self
            .client()?
            .export_images(names)
            .try_collect()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(chunks.concat().into())
    }

    /// Streams a `docker save` archive of `name` into `file` (not held in memory: an image
    /// may be gigabytes).
    ///
    /// # Errors
    /// [`Error::Api`] when the engine has no such image, [`Error::Unreachable`], or the file
    /// cannot be written.
    pub async fn save_to(&self, name: &str, file: tokio::fs::File) -> Result<(), Error> {
        use tokio::io::AsyncWriteExt;
        let mut out = tokio::io::BufWriter::new(file);
        let mut stream = self.client()?.export_image(name);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(e))?;
            out.write_all(&chunk).await.map_err(|e| Error::Api {
                status: 0,
                message: format!("cannot write the saved image: {e}"),
            })?;
        }
        out.flush().await.map_err(|e| Error::Api {
            status: 0,
            message: format!("cannot write the saved image: {e}"),
        })
    }

    /// Loads a `docker save` archive (`docker load`).
    ///
    /// # Errors
    /// [`Error::Api`] when the archive is not an image archive, [`Error::Unreachable`].
    pub async fn load(&self, archive: Bytes) -> Result<(), Error> {
        self.client()?
            .import_image(
                ImportImageOptions::default(),
                bollard::body_full(archive),
                None,
            )
            .try_collect::<Vec<_>>()
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    /// Creates a container named `name` from `image` running `cmd`, with `labels`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the image is missing, [`Error::Api`], [`Error::Unreachable`].
    pub async fn create_container(
        &self,
        name: &str,
        image: &str,
        cmd: &[&str],
        labels: HashMap<String, String>,
    ) -> Result<String, Error> {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
            labels: Some(labels),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        self.client()?
            .create_container(Some(options), body)
            .await
            .map(|r| r.id)
            .map_err(|e| self.classify(e))
    }

    /// Starts a container.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`], [`Error::Unreachable`].
    pub async fn start_container(&self, id: &str) -> Result<(), Error> {
        self.client()?
            .start_container(id, None)
            .await
            .map_err(|e| self.classify(e))
    }

    /// Removes a container, killing it first when `force`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`], [`Error::Unreachable`].
    pub async fn remove_container(&self, id: &str, force: bool) -> Result<(), Error> {
        let options = RemoveContainerOptions {
            force,
            ..Default::default()
        };
        self.client()?
            .remove_container(id, Some(options))
            .await
            .map_err(|e| self.classify(e))
    }
}

impl Engine {
    /// Removes the build cache beyond the most recently used `keep` bytes (`docker builder
    /// prune --keep-storage`); how many bytes that gave back.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`] (an engine on neither a unix socket nor plain tcp
    /// is left alone: `Ok(0)`).
    pub async fn prune_build_cache(&self, keep: u64) -> Result<i64, Error> {
        use http_body_util::BodyExt as _;
        let request = hyper::Request::post(format!("/build/prune?keep-storage={keep}"))
            .header("host", "docker")
            .body(http_body_util::Full::new(Bytes::new()))
            .map_err(|e| Error::Api {
                status: 0,
                message: e.to_string(),
            })?;
        let Some(response) = self.raw(request, false).await? else {
            return Ok(0);
        };
        if response.status().as_u16() != 200 {
            return Err(crate::buildkit::api_error(response).await);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(said["SpaceReclaimed"].as_i64().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn splits_references_with_registry_ports() {
        assert_eq!(split_reference("app:1"), ("app", "1"));
        assert_eq!(split_reference("app"), ("app", "latest"));
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app", "v2")
        );
        // by digest, with or without a tag beside it
        assert_eq!(
            split_reference("127.0.0.1:5000/app@sha256:ab"),
            ("127.0.0.1:5000/app", "sha256:ab")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app:v2@sha256:ab"),
            ("127.0.0.1:5000/app", "sha256:ab")
        );
    }
}
