//! Disk hygiene: the images capstan deployed (the ledger's) or built (the pipeline's) that
//! none of their app's last `keep` releases and no container uses are removed, on a schedule
//! and on `capstan images prune`. An image capstan never deployed or built is never looked at,
//! and one someone else also tagged is left with its tags. The build cache is kept under a
//! bound. Each removal is journaled (`image_pruned`).

use std::collections::{BTreeMap, BTreeSet};

use capstan_compose::Project;
use capstan_engine::Engine;
use capstan_model::{CapstanAction, Event, PruneReport, PrunedImage};
use capstan_store::Store;
use tokio::sync::broadcast;

/// What a prune keeps and does.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Each app's latest releases whose images stay.
    pub keep: u32,
    /// Say what would go, remove nothing.
    pub dry_run: bool,
    /// Keep the build cache under this many bytes (`None`: leave it).
    pub build_cache: Option<u64>,
}

/// Why a prune could not look.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
    #[error(transparent)]
    Engine(#[from] capstan_engine::Error),
}

/// A reference as the engine lists it (`nginx` is `nginx:latest`).
fn tagged(reference: &str) -> String {
    let name = reference.rsplit('/').next().unwrap_or(reference);
    if reference.contains('@') || name.contains(':') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// The image ids capstan brought, with the apps and references that named each, and those
/// the last `keep` releases of some app ran.
async fn ledger(
    store: &Store,
    keep: u32,
) -> Result<
    (
        BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
        BTreeSet<String>,
    ),
    PruneError,
> {
    let mut ours: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    let mut kept = BTreeSet::new();
    for app in store.apps().await? {
        // newest first
        let mut releases = store.releases(app.app.clone()).await?;
        releases.sort_by_key(|r| std::cmp::Reverse(r.number));
        for (i, release) in releases.iter().enumerate() {
            let ran: BTreeMap<String, String> =
                serde_json::from_str(&release.images).unwrap_or_default();
            let model: Option<Project> = serde_json::from_str(&release.model).ok();
            for (service, id) in ran {
                if i < keep as usize {
                    kept.insert(id.clone());
                }
                let entry = ours.entry(id).or_default();
                entry.0.insert(app.app.clone());
                if let Some(image) = model
                    .as_ref()
                    .and_then(|m| m.services.get(&service))
                    .and_then(|s| s.image.as_deref())
                    .filter(|i| !i.starts_with("sha256:"))
                {
                    entry.1.insert(tagged(image));
                }
            }
        }
    }
    Ok((ours, kept))
}

/// Removes (or lists, in a dry run) what capstan brought and nothing uses any more.
///
/// # Errors
/// The ledger or the engine cannot be read; a single image that cannot be removed is left,
/// and the report says why.
pub async fn prune(
    engine: &Engine,
    store: &Store,
    live: &broadcast::Sender<Event>,
    options: PruneOptions,
) -> Result<PruneReport, PruneError> {
    let (mut ours, kept) = ledger(store, options.keep).await?;
    // the pipeline's images: built here, deployed or not
    for build in store.builds(None, 10_000).await? {
        if build.image.is_empty() {
            continue;
        }
        if let Some(image) = engine.inspect_image(&build.image).await? {
            let entry = ours.entry(image.id).or_default();
            entry.0.insert(build.app.clone());
            entry.1.insert(tagged(&build.image));
        }
    }
    let used: BTreeSet<String> = engine
        .list_containers(true)
        .await?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let mut report = PruneReport {
        dry_run: options.dry_run,
        keep: options.keep,
        ..PruneReport::default()
    };
    for image in engine.list_images().await? {
        let Some((apps, references)) = ours.get(&image.id) else {
            continue;
        };
        if kept.contains(&image.id) || used.contains(&image.id) {
            continue;
        }
        let mut seen = PrunedImage {
            id: image.id.clone(),
            tags: image.repo_tags.clone(),
            size: image.size,
            apps: apps.iter().cloned().collect(),
            reason: String::new(),
        };
        let others: Vec<&String> = image
            .repo_tags
            .iter()
            .filter(|t| !references.contains(*t))
            .collect();
        if !others.is_empty() {
            seen.reason = format!(
                "also tagged {} outside capstan's releases: left as it is",
                others
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            report.left.push(seen);
            continue;
        }
        if !options.dry_run {
            // every tag it has is one capstan's releases named: all of it goes
            if let Err(e) = engine.remove_image(&image.id, true).await {
                seen.reason = format!("cannot remove it: {e}");
                report.left.push(seen);
                continue;
            }
            let attributes = BTreeMap::from([
                ("image".to_owned(), seen.tags.join(",")),
                ("size".to_owned(), seen.size.to_string()),
                ("apps".to_owned(), seen.apps.join(",")),
                ("keep".to_owned(), options.keep.to_string()),
            ]);
            store
                .record(
                    live,
                    CapstanAction::ImagePruned,
                    image.id.clone(),
                    attributes,
                )
                .await;
            tracing::info!(image = %image.id, tags = ?seen.tags, size = seen.size, "pruned an image no release keeps");
        }
        report.reclaimed += seen.size;
        report.removed.push(seen);
    }
    if let (Some(bound), false) = (options.build_cache, options.dry_run) {
        report.build_cache_reclaimed = engine.prune_build_cache(bound).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_as_the_engine_lists_them() {
        assert_eq!(tagged("nginx"), "nginx:latest");
        assert_eq!(
            tagged("registry:5000/team/api"),
            "registry:5000/team/api:latest"
        );
        assert_eq!(
            tagged("registry:5000/team/api:1.2"),
            "registry:5000/team/api:1.2"
        );
        assert_eq!(tagged("api@sha256:abc"), "api@sha256:abc");
    }
}
