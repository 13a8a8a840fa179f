//! What changed while capstan could not see it: the engine's inventory against the stored one,
//! for everything after a (re)connect, and for single images whose state no event explained
//! ("settling", once the stream is quiet).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use capstan_engine::{ImageState, RawEvent};
use capstan_model::{Container, Event, Lifecycle};
use capstan_store::images::{self, ImageRow};
use capstan_store::{ContainerRow, NewEvent, Transaction, containers, events};
use tracing::{debug, info};

use crate::apply::history;

/// How long a difference must stay unchanged, with no event for the image, before capstan infers
/// it while connected: under load the engine changes an image's references seconds before it
/// stamps their event (it reads the image's labels for the event first, behind the same lock).
/// Measured on the 2-core CI machine under the full suite (eight writers tagging one image while
/// other tests load the same engine): events stamped more than 10 s after their change, so the
/// burst test saw 5 to 12 steps inferred and then reported (also on the last commit that had
/// landed). 30 s, as for deletions. An inference a late event contradicts is not yet replaced by
/// that event (see docs/journal.md).
const UNEXPLAINED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// How long an image gone from the engine waits for its delete event before capstan infers the
/// deletion while connected.
const DELETE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
use crate::{Error, Journal};

impl Journal {
    /// Diffs an engine snapshot taken between `start` and `end` (engine clock) against the
    /// store, after every event up to `end` was journaled. Rows an event touched at or after
    /// `start` are left alone: the snapshot may predate that event. Each difference becomes an
    /// inferred event and, for images, an inferred lifecycle entry.
    ///
    /// Except for an image the engine tagged within [`UNEXPLAINED_FOR`] of the snapshot: under
    /// load the engine shows a tag seconds before it stamps the tag's event, which may then come
    /// after the replay's end. Such images are returned, for the live stream to settle.
    pub(crate) async fn reconcile(
        &self,
        snapshot: Vec<ImageState>,
        live_containers: Vec<Container>,
        start: i64,
        end: i64,
    ) -> Result<BTreeSet<String>, Error> {
        let ids: Vec<String> = snapshot.iter().map(|i| i.id.clone()).collect();
        let stored: HashMap<String, ImageRow> = self
            .store
            .read(move |conn| {
                let mut out = HashMap::new();
                for id in ids {
                    if let Some(row) = images::get(conn, &id)? {
                        out.insert(id, row);
                    }
                }
                Ok(out)
            })
            .await?;
        // Layer counts need an inspect: only for images new to the store or changed.
        let mut engine_images = Vec::with_capacity(snapshot.len());
        for mut image in snapshot {
            let known = stored.get(&image.id).filter(|r| r.deleted_nano.is_none());
            if known.is_none_or(|r| {
                r.repo_tags != image.repo_tags || r.repo_digests != image.repo_digests
            }) && let Some(full) = self.engine.inspect_image(&image.id).await?
            {
                image = full;
            } else if let Some(r) = known {
                image.layers = Some(r.layers);
            }
            engine_images.push(image);
        }
        let recent = start - UNEXPLAINED_FOR.as_nanos() as i64;
        let (inferred, deferred) = self
            .store
            .write(move |tx| {
                let mut out = Vec::new();
                let mut deferred = BTreeSet::new();
                let mut on_engine = BTreeSet::new();
                for image in &engine_images {
                    on_engine.insert(image.id.clone());
                    let row = images::get(tx, &image.id)?;
                    if row.as_ref().is_none_or(|r| r.last_event_nano < start) {
                        let tagged = image
                            .last_tagged
                            .and_then(|t| t.timestamp_nanos_opt())
                            .is_some_and(|t| t >= recent);
                        if tagged && differs(row.as_ref(), Some(image)) {
                            deferred.insert(image.id.clone());
                            continue;
                        }
                        diff_image(tx, &image.id, Some(image), row, end, &mut out)?;
                    }
                }
                for row in images::present(tx)? {
                    if !on_engine.contains(&row.id) && row.last_event_nano < start {
                        diff_image(tx, &row.id.clone(), None, Some(row), end, &mut out)?;
                    }
                }
                diff_containers(tx, &live_containers, start, end, &mut out)?;
                Ok((out, deferred))
            })
            .await?;
        if !inferred.is_empty() {
            info!(
                changes = inferred.len(),
                "recorded what changed while the engine was not watched"
            );
        }
        if !deferred.is_empty() {
            debug!(
                images = deferred.len(),
                "tagged while connecting: settling them once their events had time to come"
            );
        }
        self.publish(inferred);
        Ok(deferred)
    }

    /// Records as inferred what no event explained for `ids` (a tag moved by a pull,
    /// references brought by a load). Images an event touched within `quiet` (engine clock) are
    /// still changing: they stay pending, and are returned.
    ///
    /// `read` is the engine time of the newest event the stream has read and journaled. Nothing
    /// is inferred unless the engine confirms it has no image event newer than `read` up to the
    /// inspection: a busy engine or a starved reader delivers events seconds late, and a state
    /// seen before its event is read is not unexplained. Everything then stays pending.
    ///
    /// And with `wait_unexplained` (while the stream is live) a difference is inferred only
    /// once settling has seen it unchanged,
    /// with no event for the image, for [`UNEXPLAINED_FOR`]: a starved engine changes an image's
    /// references before it stamps and sends their event, and a change seen in that gap is not
    /// unexplained either. Only events about the images being settled hold them back: on a
    /// shared engine other images change all the time.
    pub(crate) async fn settle(
        &self,
        ids: BTreeSet<String>,
        quiet: std::time::Duration,
        read: i64,
        wait_unexplained: bool,
    ) -> Result<BTreeSet<String>, Error> {
        let mut states = Vec::with_capacity(ids.len());
        for id in &ids {
            let state = self.engine.inspect_image(id).await?;
            states.push((id.clone(), state));
        }
        let now = self.engine.now_nanos().await?;
        let unread = self.engine.events_between(read + 1, now).await?;
        let images: Vec<&RawEvent> = unread.iter().filter(|e| e.kind == "image").collect();
        let pending = unread.len() >= capstan_engine::EVENT_BUFFER
            || (!images.is_empty() && {
                // only events about these images hold them back: on a shared engine other
                // images change all the time, and waiting for a quiet engine would never end
                let known = self.known_references(&ids, &states).await?;
                images.iter().any(|e| concerns(e, &ids, &known))
            });
        if pending {
            debug!(
                unread = unread.len(),
                "the event stream is behind the engine: inferring nothing yet"
            );
            return Ok(ids);
        }
        let start = now - quiet.as_nanos() as i64;
        let delete_start = now - DELETE_GRACE.as_nanos().max(quiet.as_nanos()) as i64;
        let before = self
            .sightings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (inferred, still, seen) = self
            .store
            .write(move |tx| {
                let mut out = Vec::new();
                let mut still = BTreeSet::new();
                let mut seen = Sightings::new();
                for (id, state) in &states {
                    let row = images::get(tx, id)?;
                    // the engine reports every deletion: wait much longer for that event before
                    // inferring one (it may have been dropped by the engine)
                    let window = if state.is_none() { delete_start } else { start };
                    if row.as_ref().is_some_and(|r| r.last_event_nano >= window) {
                        still.insert(id.clone());
                        continue;
                    }
                    if wait_unexplained && differs(row.as_ref(), state.as_ref()) {
                        let key = (
                            row.as_ref().map_or(0, |r| r.last_event_nano),
                            state
                                .as_ref()
                                .map(|s| s.repo_tags.iter().cloned().collect::<BTreeSet<String>>()),
                        );
                        let since = match before.get(id) {
                            Some(s) if s.key == key => s.since_nano,
                            // first seen (or changed since): the clock starts again
                            _ => now,
                        };
                        if now - since < UNEXPLAINED_FOR.as_nanos() as i64 {
                            seen.insert(
                                id.clone(),
                                Sighting {
                                    key,
                                    since_nano: since,
                                },
                            );
                            still.insert(id.clone());
                            continue;
                        }
                    }
                    diff_image(tx, id, state.as_ref(), row, start, &mut out)?;
                }
                Ok((out, still, seen))
            })
            .await?;
        if wait_unexplained {
            *self
                .sightings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
        }
        self.publish(inferred);
        Ok(still)
    }
}

impl Journal {
    /// Every reference the engine or the store knows `ids` by: an unread pull or push names its
    /// image only by reference.
    async fn known_references(
        &self,
        ids: &BTreeSet<String>,
        states: &[(String, Option<ImageState>)],
    ) -> Result<BTreeSet<String>, Error> {
        let mut known: BTreeSet<String> = states
            .iter()
            .filter_map(|(_, s)| s.as_ref())
            .flat_map(|s| s.repo_tags.iter().chain(&s.repo_digests).cloned())
            .collect();
        let ids: Vec<String> = ids.iter().cloned().collect();
        let stored = self
            .store
            .read(move |conn| {
                let mut out = Vec::new();
                for id in &ids {
                    if let Some(row) = images::get(conn, id)? {
                        out.extend(row.repo_tags);
                        out.extend(row.last_tags);
                        out.extend(row.repo_digests);
                    }
                }
                Ok(out)
            })
            .await?;
        known.extend(stored);
        Ok(known
            .iter()
            .map(|r| images::normalize_reference(r))
            .collect())
    }
}

/// Whether an image event is about one of `ids`: by id, or by one of their references (pull and
/// push name the reference, and may leave out a default `:latest`).
fn concerns(event: &RawEvent, ids: &BTreeSet<String>, known: &BTreeSet<String>) -> bool {
    ids.contains(&event.actor)
        || std::iter::once(&event.actor)
            .chain(event.attributes.get("name"))
            .any(|n| known.contains(&images::normalize_reference(n)))
}

/// Per image, a difference settling saw and has not inferred yet.
pub(crate) type Sightings = HashMap<String, Sighting>;

/// A difference between an image's row and the engine, as first seen.
#[derive(Debug, Clone)]
pub(crate) struct Sighting {
    /// The newest event the row had, and the engine's references (none: gone).
    key: (i64, Option<BTreeSet<String>>),
    /// Engine time settling first saw it so.
    since_nano: i64,
}

/// Whether the engine's state of an image differs from its row: there or not, or other
/// references.
pub(crate) fn differs(row: Option<&ImageRow>, state: Option<&ImageState>) -> bool {
    let present = row.filter(|r| r.deleted_nano.is_none());
    match (present, state) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(r), Some(s)) => {
            r.repo_tags.iter().collect::<BTreeSet<_>>()
                != s.repo_tags.iter().collect::<BTreeSet<_>>()
        }
    }
}

fn inferred_event(
    tx: &Transaction<'_>,
    at: i64,
    kind: &str,
    action: &str,
    actor: &str,
    attributes: BTreeMap<String, String>,
    image_id: Option<&str>,
) -> Result<Event, capstan_store::Error> {
    let event = events::insert(
        tx,
        &NewEvent {
            time_nano: at,
            identity: 0,
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: actor.to_owned(),
            attributes,
            scope: Some("local".to_owned()),
            image_id: image_id.map(str::to_owned),
            inferred: true,
        },
    )?;
    // inferred events are never deduplicated, so the insert always lands
    event.ok_or_else(|| capstan_store::Error::Migration("inferred event was not stored".into()))
}

fn name(tag: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("name".to_owned(), tag.to_owned())])
}

/// Brings one stored image in line with the engine (`engine` is `None` when the engine no
/// longer has it), recording each difference at `at` as an inferred event and lifecycle entry.
fn diff_image(
    tx: &Transaction<'_>,
    id: &str,
    engine: Option<&ImageState>,
    row: Option<ImageRow>,
    at: i64,
    out: &mut Vec<Event>,
) -> Result<(), capstan_store::Error> {
    let present_row = row.filter(|r| r.deleted_nano.is_none());
    let Some(image) = engine else {
        if let Some(mut row) = present_row {
            let attrs = row
                .last_tags
                .first()
                .map_or_else(BTreeMap::new, |t| name(t));
            let e = inferred_event(tx, at, "image", "delete", id, attrs, Some(id))?;
            history(tx, id, at, Lifecycle::Deleted, None, true, Some(e.seq))?;
            out.push(e);
            row.deleted_nano = Some(at);
            row.repo_tags.clear();
            images::upsert(tx, &row)?;
        }
        return Ok(());
    };
    let (old_tags, first_seen) = match present_row {
        Some(r) => (
            r.repo_tags.into_iter().collect::<BTreeSet<_>>(),
            r.first_seen,
        ),
        None => {
            let attrs = image
                .repo_tags
                .first()
                .map_or_else(BTreeMap::new, |t| name(t));
            let e = inferred_event(tx, at, "image", "appear", id, attrs, Some(id))?;
            let refs = image.repo_tags.join(", ");
            history(
                tx,
                id,
                at,
                Lifecycle::Discovered,
                (!refs.is_empty()).then_some(refs.as_str()),
                true,
                Some(e.seq),
            )?;
            out.push(e);
            // a new image's tags are in its discovery entry
            (image.repo_tags.iter().cloned().collect(), at)
        }
    };
    let new_tags: BTreeSet<String> = image.repo_tags.iter().cloned().collect();
    for tag in new_tags.difference(&old_tags) {
        let e = inferred_event(tx, at, "image", "tag", id, name(tag), Some(id))?;
        history(tx, id, at, Lifecycle::Tagged, Some(tag), true, Some(e.seq))?;
        out.push(e);
    }
    for tag in old_tags.difference(&new_tags) {
        let e = inferred_event(tx, at, "image", "untag", id, name(tag), Some(id))?;
        history(
            tx,
            id,
            at,
            Lifecycle::Untagged,
            Some(tag),
            true,
            Some(e.seq),
        )?;
        out.push(e);
    }
    images::upsert(
        tx,
        &ImageRow {
            id: id.to_owned(),
            repo_tags: image.repo_tags.clone(),
            last_tags: image.repo_tags.clone(),
            repo_digests: image.repo_digests.clone(),
            size: image.size,
            created_nano: image.created.and_then(|c| c.timestamp_nanos_opt()),
            layers: image.layers.unwrap_or_default(),
            first_seen,
            last_seen: at,
            deleted_nano: None,
            last_event_nano: 0,
        },
    )
}

fn diff_containers(
    tx: &Transaction<'_>,
    live: &[Container],
    start: i64,
    end: i64,
    out: &mut Vec<Event>,
) -> Result<(), capstan_store::Error> {
    let stored: HashMap<String, (String, i64)> = containers::present(tx)?
        .into_iter()
        .map(|(id, state, last)| (id, (state, last)))
        .collect();
    let mut live_ids = BTreeSet::new();
    for c in live {
        live_ids.insert(c.id.clone());
        let known = containers::seen(tx, &c.id)?;
        if known.is_some_and(|(_, last, _)| last >= start) {
            continue;
        }
        let attrs = BTreeMap::from([
            ("name".to_owned(), c.name.clone()),
            ("image".to_owned(), c.image.clone()),
        ]);
        let action = match stored.get(&c.id) {
            None => Some("create"),
            Some((state, _)) if *state != c.state => Some(match c.state.as_str() {
                "running" => "start",
                "paused" => "pause",
                "created" => "create",
                _ => "die",
            }),
            Some(_) => None,
        };
        if let Some(action) = action {
            out.push(inferred_event(
                tx,
                end,
                "container",
                action,
                &c.id,
                attrs,
                None,
            )?);
        }
        containers::upsert(
            tx,
            &ContainerRow {
                container: c.clone(),
                first_seen: known.map_or(end, |k| k.0),
                last_seen: end,
                removed_nano: None,
                last_event_nano: 0,
            },
        )?;
    }
    for (id, (_, last)) in stored {
        if live_ids.contains(&id) || last >= start {
            continue;
        }
        out.push(inferred_event(
            tx,
            end,
            "container",
            "destroy",
            &id,
            BTreeMap::new(),
            None,
        )?);
        containers::mark_removed(tx, &id, end, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, name: Option<&str>) -> RawEvent {
        RawEvent {
            time_nano: 1,
            kind: "image".into(),
            action: "pull".into(),
            actor: actor.into(),
            attributes: name
                .map(|n| BTreeMap::from([("name".to_owned(), n.to_owned())]))
                .unwrap_or_default(),
            scope: Some("local".into()),
        }
    }

    #[test]
    fn only_events_about_the_settled_images_hold_them_back() {
        let ids = BTreeSet::from(["sha256:aa".to_owned()]);
        let known = BTreeSet::from([
            "localhost:5000/app:1".to_owned(),
            "busybox:latest".to_owned(),
        ]);
        assert!(concerns(&event("sha256:aa", None), &ids, &known));
        assert!(concerns(&event("localhost:5000/app:1", None), &ids, &known));
        assert!(concerns(
            &event("sha256:bb", Some("localhost:5000/app:1")),
            &ids,
            &known
        ));
        assert!(concerns(&event("busybox", None), &ids, &known));
        assert!(!concerns(
            &event("sha256:bb", Some("other:1")),
            &ids,
            &known
        ));
        assert!(!concerns(
            &event("localhost:5000/app:2", None),
            &ids,
            &known
        ));
    }
}
