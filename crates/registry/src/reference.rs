//! Image references as Docker reads them: `[registry/]repository[:tag][@digest]`, with Docker
//! Hub's aliases (`docker.io`, `index.docker.io`) and its `library/` namespace for one-word names.

use std::fmt;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io` for Docker Hub, else the host and port as written (`127.0.0.1:5000`).
    pub registry: String,
    /// `library/nginx`, `shop/api`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was written.
    pub tag: Option<String>,
    /// `sha256:...`, when pinned.
    pub digest: Option<String>,
}

/// Why a reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reference:?} is not an image reference: {reason} (write it like nginx:1.27, ghcr.io/owner/app:v2 or 127.0.0.1:5000/app@sha256:...)"
)]
pub struct BadReference {
    pub reference: String,
    pub reason: &'static str,
}

impl Reference {
    /// Parses `text` as Docker does.
    ///
    /// # Errors
    /// An empty name, upper-case letters in the repository, a bad tag or digest.
    pub fn parse(text: &str) -> Result<Self, BadReference> {
        let bad = |reason| BadReference {
            reference: text.to_owned(),
            reason,
        };
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                let (algo, hex) = d
                    .split_once(':')
                    .ok_or_else(|| bad("the digest has no algorithm"))?;
                if algo.is_empty()
                    || hex.len() < 32
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad("the digest is not algorithm:hex"));
                }
                (r, Some(d.to_owned()))
            }
            None => (text, None),
        };
        // a tag is after the last ':' that comes after the last '/' (a port is before it)
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("the tag is not 1-128 letters, digits, _ . -"));
            }
        }
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
                DOCKER_HUB.to_owned()
            }
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "each part of the repository is lower-case letters, digits and . _ - (not at its ends)",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the registry API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What a manifest request names: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository at another tag.
    #[must_use]
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The repository as Docker shows it (`nginx`, not `docker.io/library/nginx`).
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar_name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn docker_reads_these_names_so() {
        let d = "sha256:".to_owned() + &"a".repeat(64);
        let s = |v: &str| v.to_owned();
        assert_eq!(
            parts("nginx"),
            (s("docker.io"), s("library/nginx"), Some(s("latest")), None)
        );
        assert_eq!(
            parts("nginx:1.27"),
            (s("docker.io"), s("library/nginx"), Some(s("1.27")), None)
        );
        assert_eq!(parts("docker.io/nginx").1, "library/nginx");
        assert_eq!(parts("index.docker.io/library/nginx:1").0, "docker.io");
        assert_eq!(parts("bitnami/redis:7").1, "bitnami/redis");
        assert_eq!(parts("ghcr.io/owner/app:v2").0, "ghcr.io");
        assert_eq!(parts("ghcr.io/owner/app:v2").1, "owner/app");
        assert_eq!(
            parts("127.0.0.1:5000/shop/api:1.0.1-alpine"),
            (
                s("127.0.0.1:5000"),
                s("shop/api"),
                Some(s("1.0.1-alpine")),
                None
            )
        );
        assert_eq!(parts("localhost/app").0, "localhost");
        assert_eq!(
            parts(&format!("127.0.0.1:5000/app@{d}")),
            (s("127.0.0.1:5000"), s("app"), None, Some(d.clone()))
        );
        assert_eq!(parts(&format!("app:1@{d}")).2, Some(s("1")));
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "nginx:latest");
        assert_eq!(
            Reference::parse("127.0.0.1:5000/app:2")
                .unwrap()
                .to_string(),
            "127.0.0.1:5000/app:2"
        );
    }

    #[test]
    fn bad_references_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("Nginx:1", "lower-case"),
            ("nginx:", "tag"),
            ("nginx:-x", "tag"),
            ("nginx@sha256:xyz", "digest"),
            ("nginx@abc", "algorithm"),
            ("shop//api", "lower-case"),
        ] {
            let e = Reference::parse(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
        }
    }
}
