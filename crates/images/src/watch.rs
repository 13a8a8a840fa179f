//! Checking one watched image against its registry: has the content under its tag changed for
//! this host's platform, and, for a tag policy, is there a newer tag it allows?
//!
//! A check costs one HEAD on the tag, plus one tag listing and one HEAD on the candidate when
//! the policy compares tags. A manifest is fetched (GET) only when the tag's digest is one not
//! judged before and it, or the running image, is a multi-arch index: then the host platform's
//! child decides, so a change to another platform or to an attestation is not an update.

use capstan_model::{ImageUpdate, UpdateCandidate};
use capstan_registry::{Client, Error, Platform, Policy, Reference};
use chrono::Utc;
use futures_util::FutureExt as _;

/// An image to watch and what runs now.
#[derive(Debug, Clone)]
pub struct Target {
    /// The reference the container asked for (`shop/api:v1.0.1`).
    pub reference: Reference,
    pub policy: Policy,
    /// The digest the running image was pulled as (its `RepoDigests` entry for this
    /// repository): a manifest or an index. `None` for an image built or loaded here.
    pub running: Option<String>,
    /// Which tags a tag policy may consider.
    pub filter: TagFilter,
}

/// Which tags a tag policy may take: those `include` matches (all when unset) and `exclude`
/// does not (labels `io.capstan.update.include` and `io.capstan.update.exclude`), once capstan
/// has known them for `min_age` (`io.capstan.update.min_age`).
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    pub include: Option<regex::Regex>,
    pub exclude: Option<regex::Regex>,
    pub min_age: Option<std::time::Duration>,
}

impl TagFilter {
    pub fn allows(&self, tag: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(tag))
            && self.exclude.as_ref().is_none_or(|r| !r.is_match(tag))
    }
}

/// What a check found (the API's [`ImageUpdate`]).
pub type Check = ImageUpdate;

/// The tag lists read in one cycle, by registry and repository: a repository is listed once
/// per cycle however many of its tags are watched.
#[derive(Debug, Default)]
pub struct TagLists(std::collections::HashMap<(String, String), Vec<String>>);

impl TagLists {
    async fn of(&mut self, client: &Client, reference: &Reference) -> Result<&[String], Error> {
        let key = (reference.registry.clone(), reference.repository.clone());
        if !self.0.contains_key(&key) {
            let tags = client.tags(reference).await?;
            self.0.insert(key.clone(), tags);
        }
        Ok(self.0.get(&key).map_or(&[], Vec::as_slice))
    }
}

/// The digest of the image for `platform` under `digest`: the child of an index, or the
/// manifest itself.
async fn host_image(
    client: &Client,
    reference: &Reference,
    digest: &str,
    platform: &Platform,
) -> Result<String, Error> {
    let manifest = client.manifest(reference, digest).await?;
    if manifest.children.is_empty() {
        return Ok(digest.to_owned());
    }
    manifest
        .child_for(platform)
        .map(|c| c.digest.clone())
        .ok_or_else(|| Error::Response {
            url: reference.to_string(),
            message: format!(
                "the index {digest} has no image for {}/{}",
                platform.os, platform.architecture
            ),
        })
}

/// Checks `target` once. `previous` is the last check of the same target: a tag digest judged
/// then is not fetched again. `tags` holds the tag lists this cycle has read.
pub async fn check(
    client: &Client,
    target: &Target,
    previous: Option<&Check>,
    platform: &Platform,
    tags: &mut TagLists,
) -> Check {
    let mut out = Check {
        reference: target.reference.to_string(),
        policy: target.policy.to_string(),
        running: target.running.clone(),
        tag_digest: None,
        running_child: None,
        tag_child: None,
        content_changed: false,
        candidate: None,
        waiting: None,
        candidate_seen: None,
        reason: String::new(),
        checked_at: Utc::now(),
        error: None,
        rate_limit_remaining: None,
        containers: Vec::new(),
        auto: None,
    };
    if matches!(target.policy, Policy::None) {
        out.reason = "policy none: not watched".into();
        return out;
    }
    // one image's check that panics (a registry's answer capstan did not foresee) fails that
    // check alone: the watcher and the other images' checks go on
    let outcome = std::panic::AssertUnwindSafe(check_into(
        client, target, previous, platform, tags, &mut out,
    ))
    .catch_unwind()
    .await;
    let error = match outcome {
        Ok(Ok(())) => return out,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the check failed unexpectedly (a bug in capstan: see its log); the other \
                   images are still checked"
            .to_owned(),
    };
    let mut failed = previous.cloned().unwrap_or(out);
    failed.checked_at = Utc::now();
    failed.error = Some(error);
    failed
}

async fn check_into(
    client: &Client,
    target: &Target,
    previous: Option<&Check>,
    platform: &Platform,
    tags: &mut TagLists,
    out: &mut Check,
) -> Result<(), Error> {
    let head = client.head(&target.reference).await?;
    out.rate_limit_remaining = head.rate_limit.map(|r| r.remaining);
    out.tag_digest = Some(head.digest.clone());
    let tag = target.reference.tag.as_deref().unwrap_or("latest");
    // a tag digest judged for the same running image last time is not fetched again
    let judged = previous.filter(|p| {
        p.running == target.running
            && p.error.is_none()
            && p.tag_digest.as_deref() == Some(head.digest.as_str())
    });
    out.reason = match (&target.running, judged) {
        // no running digest (a ref from config, an image built here): what counts is whether
        // the tag moved since the last check
        (None, _) => {
            let last = previous
                .filter(|p| p.running.is_none() && p.error.is_none())
                .and_then(|p| p.tag_digest.clone());
            out.content_changed = last.as_ref().is_some_and(|d| *d != head.digest);
            match last {
                None => format!("{tag} first seen as {}", head.digest),
                Some(d) if d == head.digest => format!("{tag} has not moved since the last check"),
                Some(_) => format!("{tag} moved to {} since the last check", head.digest),
            }
        }
        (Some(running), _) if *running == head.digest => format!("{tag} is what runs"),
        (Some(_), Some(p)) => {
            out.running_child.clone_from(&p.running_child);
            out.tag_child.clone_from(&p.tag_child);
            out.content_changed = p.content_changed;
            // the content part of the last reason (a tag policy's part is found again below)
            p.reason.split("; ").next().unwrap_or_default().to_owned()
        }
        (Some(running), None) => {
            let known = previous
                .filter(|p| p.running == target.running)
                .and_then(|p| p.running_child.clone());
            let running_child = match known {
                Some(c) => c,
                None => host_image(client, &target.reference, running, platform).await?,
            };
            let tag_child = if head.is_index() {
                host_image(client, &target.reference, &head.digest, platform).await?
            } else {
                head.digest.clone()
            };
            out.content_changed = running_child != tag_child;
            let reason = if out.content_changed {
                format!(
                    "{tag} holds a new {}/{} image ({tag_child})",
                    platform.os, platform.architecture
                )
            } else {
                format!(
                    "{tag}'s index changed, but not its {}/{} image (another platform or an attestation did)",
                    platform.os, platform.architecture
                )
            };
            out.running_child = Some(running_child);
            out.tag_child = Some(tag_child);
            reason
        }
    };
    if target.policy.compares_tags() {
        let listed: Vec<String> = tags
            .of(client, &target.reference)
            .await?
            .iter()
            .filter(|t| target.filter.allows(t))
            .cloned()
            .collect();
        let choice = target.policy.choose(tag, &listed);
        if let Some(candidate) = choice.candidate {
            let head = client.head(&target.reference.with_tag(&candidate)).await?;
            let offered = UpdateCandidate {
                tag: candidate,
                digest: head.digest,
            };
            // known since the check that first saw the same tag and digest
            let seen = previous
                .filter(|p| p.candidate.as_ref().or(p.waiting.as_ref()) == Some(&offered))
                .and_then(|p| p.candidate_seen)
                .unwrap_or(out.checked_at);
            out.candidate_seen = Some(seen);
            let ready = target.filter.min_age.is_none_or(|age| {
                chrono::Duration::from_std(age).is_ok_and(|age| out.checked_at - seen >= age)
            });
            if ready {
                out.candidate = Some(offered);
            } else {
                let age = target.filter.min_age.unwrap_or_default();
                let until = seen + chrono::Duration::from_std(age).unwrap_or_default();
                out.reason = format!(
                    "{}; {} is younger than the minimum age ({} s): offered from {}",
                    out.reason,
                    offered.tag,
                    age.as_secs(),
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
                out.waiting = Some(offered);
            }
        }
        out.reason = format!("{}; {}", out.reason, choice.reason);
    }
    Ok(())
}
