//! Tags that moved on this host: a container runs the image its reference named when it was
//! made, and the reference now names another image here (someone pulled, or built, the new
//! one and did not apply it). Found on the engine alone, no registry asked.

use std::collections::BTreeMap;

use capstan_engine::{Engine, ImageState};
use capstan_model::StaleImage;

/// The digest `image` was pulled as from `reference`'s repository (`repo@sha256:...` in its
/// `RepoDigests`), when it was.
fn digest_for(image: &ImageState, reference: &str) -> Option<String> {
    let repository = reference_repository(reference);
    image.repo_digests.iter().find_map(|d| {
        let (name, digest) = d.split_once('@')?;
        (reference_repository(name) == repository).then(|| digest.to_owned())
    })
}

/// `name` without its tag (a registry's port is not a tag), Docker Hub's short forms as
/// written (the engine writes both sides the same way).
fn reference_repository(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// An image id, full or short, as the engine writes one where a reference would be.
fn looks_like_id(text: &str) -> bool {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    text.starts_with("sha256:")
        || (hex.len() >= 12 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every running container whose reference names another image on this host than the one it
/// runs, grouped by reference and running image. Replicas a rollout set aside are left out.
///
/// # Errors
/// The engine cannot be reached.
pub async fn stale_images(engine: &Engine) -> Result<Vec<StaleImage>, capstan_engine::Error> {
    let containers = engine.list_containers(false).await?;
    let mut images: BTreeMap<String, Option<ImageState>> = BTreeMap::new();
    let mut out: BTreeMap<(String, String), StaleImage> = BTreeMap::new();
    // a replica a rollout set aside is on its way out, not left behind
    for mut c in containers
        .into_iter()
        .filter(|c| !capstan_model::is_retiring(&c.name))
    {
        // the engine lists a container by its image's id once its reference names another
        // image: the reference it was made from is in its own config
        if looks_like_id(&c.image) {
            let made_from = engine
                .inspect_container_json(&c.id)
                .await
                .ok()
                .and_then(|d| d["Config"]["Image"].as_str().map(str::to_owned));
            match made_from {
                Some(r) if !looks_like_id(&r) => c.image = r,
                _ => continue,
            }
        }
        // pinned by digest: its reference cannot move
        if c.image.contains('@') || c.image.is_empty() {
            continue;
        }
        if !images.contains_key(&c.image) {
            images.insert(c.image.clone(), engine.inspect_image(&c.image).await?);
        }
        let Some(Some(tag)) = images.get(&c.image).cloned() else {
            continue;
        };
        if tag.id == c.image_id {
            continue;
        }
        if !images.contains_key(&c.image_id) {
            images.insert(c.image_id.clone(), engine.inspect_image(&c.image_id).await?);
        }
        let running = images.get(&c.image_id).cloned().flatten();
        let entry = out
            .entry((c.image.clone(), c.image_id.clone()))
            .or_insert_with(|| StaleImage {
                reference: c.image.clone(),
                containers: Vec::new(),
                running_id: c.image_id.clone(),
                running_digest: running.as_ref().and_then(|r| digest_for(r, &c.image)),
                tag_id: tag.id.clone(),
                tag_digest: digest_for(&tag, &c.image),
            });
        entry.containers.push(c.name);
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_read_for_the_references_repository_alone() {
        let image = ImageState {
            id: "sha256:1".into(),
            repo_tags: Vec::new(),
            repo_digests: vec![
                "127.0.0.1:5000/other@sha256:aaa".into(),
                "127.0.0.1:5000/app@sha256:bbb".into(),
            ],
            size: 0,
            created: None,
            layers: None,
            last_tagged: None,
        };
        assert_eq!(
            digest_for(&image, "127.0.0.1:5000/app:main").as_deref(),
            Some("sha256:bbb")
        );
        assert_eq!(
            digest_for(&image, "127.0.0.1:5000/app").as_deref(),
            Some("sha256:bbb")
        );
        assert_eq!(digest_for(&image, "127.0.0.1:5000/none:1"), None);
    }
}
