//! Journaling a batch of engine events: dedup, resolve, then one transaction that stores the
//! events, the lifecycle entries they mean and the inventory they leave behind.

use std::collections::{BTreeSet, HashMap};

use capstan_engine::{ImageState, RawEvent};
use capstan_model::{Container, Event, Lifecycle};
use capstan_store::Transaction as Tx;
use capstan_store::images::{self, HistoryRow, ImageRow, normalize_reference};
use capstan_store::{ContainerRow, NewEvent, containers, events};

use crate::{Error, Journal};

/// Lifecycle steps that say where an image came from; a tag of an image with none of them is
/// a build.
const ORIGINS: &[Lifecycle] = &[
    Lifecycle::Pulled,
    Lifecycle::Built,
    Lifecycle::Imported,
    Lifecycle::Loaded,
    Lifecycle::Committed,
    Lifecycle::Discovered,
];

/// Engine state of everything a batch touched, read before the write transaction.
struct Touched {
    /// Per event: the image id it is about.
    image_of: Vec<Option<String>>,
    /// Image id → its state now (`None`: the engine no longer has it).
    images: HashMap<String, Option<ImageState>>,
    /// Container id → its state now.
    containers: HashMap<String, Option<Container>>,
}

impl Journal {
    /// Journals a batch read from the stream; returns the events that were new and the images
    /// left to settle.
    pub(crate) async fn ingest(
        &self,
        batch: Vec<RawEvent>,
    ) -> Result<(Vec<Event>, BTreeSet<String>), Error> {
        let keys: Vec<(i64, i64)> = batch.iter().map(|e| (e.time_nano, e.identity())).collect();
        let known = self
            .store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT 1 FROM events WHERE time_nano = ?1 AND identity = ?2 AND inferred = 0",
                )?;
                keys.iter()
                    .map(|(t, i)| stmt.exists([t, i]).map_err(Into::into))
                    .collect::<Result<Vec<bool>, capstan_store::Error>>()
            })
            .await?;
        let fresh: Vec<RawEvent> = batch
            .into_iter()
            .zip(known)
            .filter_map(|(e, known)| (!known).then_some(e))
            .collect();
        if fresh.is_empty() {
            return Ok((Vec::new(), BTreeSet::new()));
        }
        let touched = self.read_touched(&fresh).await?;
        self.store
            .write(move |tx| apply(tx, &fresh, touched))
            .await
            .map_err(Into::into)
    }

    /// Asks the engine about every image and container the events touch, plus the images that
    /// held a tag the batch moves.
    async fn read_touched(&self, fresh: &[RawEvent]) -> Result<Touched, Error> {
        let mut image_of = Vec::with_capacity(fresh.len());
        let mut image_ids = BTreeSet::new();
        let mut tags = BTreeSet::new();
        let mut container_ids = BTreeSet::new();
        // reference → image id, as the events of this batch assign them, in order
        let mut assigned: HashMap<String, String> = HashMap::new();
        for e in fresh {
            let mut id = None;
            match e.kind.as_str() {
                "image" => {
                    if e.actor.starts_with("sha256:") {
                        id = Some(e.actor.clone());
                    } else {
                        // pull and push name a reference, not an id
                        let reference = normalize_reference(&e.actor);
                        id = self.resolve_reference(e, &reference, &assigned).await?;
                        if let Some(found) = &id {
                            assigned.insert(reference.clone(), found.clone());
                        }
                        tags.insert(normalize_reference(&e.actor));
                    }
                    if e.action == "tag"
                        && let Some(name) = e.attributes.get("name")
                    {
                        tags.insert(normalize_reference(name));
                        assigned.insert(normalize_reference(name), e.actor.clone());
                    }
                }
                "container" => {
                    container_ids.insert(e.actor.clone());
                }
                _ => {}
            }
            image_ids.extend(id.clone());
            image_of.push(id);
        }
        let mut images = HashMap::new();
        let mut pending: Vec<String> = image_ids.into_iter().collect();
        pending.extend(self.holders(tags).await?);
        // Rounds: an image gaining tags (load, import) takes them from whoever held them.
        for _ in 0..2 {
            let mut gained = BTreeSet::new();
            for id in std::mem::take(&mut pending) {
                if images.contains_key(&id) {
                    continue;
                }
                let state = self.engine.inspect_image(&id).await?;
                if let Some(s) = &state {
                    gained.extend(s.repo_tags.iter().cloned());
                }
                images.insert(id, state);
            }
            pending = self
                .holders(gained)
                .await?
                .into_iter()
                .filter(|id| !images.contains_key(id))
                .collect();
            if pending.is_empty() {
                break;
            }
        }
        let mut containers = HashMap::new();
        for id in container_ids {
            let state = self.engine.inspect_container(&id).await?;
            containers.insert(id, state);
        }
        Ok(Touched {
            image_of,
            images,
            containers,
        })
    }

    /// The image a pull or push event is about. A push names a reference that a tag (or an
    /// earlier pull) gave an id: the journal knows which, whatever happened since. A pull is
    /// what the reference points at now; when the engine no longer has it (deleted since), the
    /// journal's last assignment of that reference stands in.
    async fn resolve_reference(
        &self,
        e: &RawEvent,
        reference: &str,
        assigned: &HashMap<String, String>,
    ) -> Result<Option<String>, Error> {
        let from_journal = || async {
            if let Some(id) = assigned.get(reference) {
                return Ok::<_, Error>(Some(id.clone()));
            }
            let (reference, before) = (reference.to_owned(), e.time_nano);
            Ok(self
                .store
                .read(move |conn| events::last_assignment(conn, &reference, before))
                .await?)
        };
        if e.action == "push"
            && let Some(id) = from_journal().await?
        {
            return Ok(Some(id));
        }
        if let Some(state) = self.engine.inspect_image(&e.actor).await? {
            return Ok(Some(state.id));
        }
        if let Some(id) = from_journal().await? {
            return Ok(Some(id));
        }
        Ok(self.holders([reference.to_owned()].into()).await?.pop())
    }

    /// Present images that carry any of `tags`.
    async fn holders(&self, tags: BTreeSet<String>) -> Result<Vec<String>, Error> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .read(move |conn| {
                let mut ids = BTreeSet::new();
                for tag in &tags {
                    ids.extend(images::holders_of(conn, tag)?);
                }
                Ok(ids.into_iter().collect())
            })
            .await?)
    }
}

/// Per image, the tags a batch removed and added, and which of them events explained.
#[derive(Default)]
struct TagChanges {
    /// Stored tags the engine no longer shows, not yet claimed by an untag event.
    removed: Vec<String>,
    /// Tags untag events claimed.
    popped: Vec<String>,
    /// Tags the image holds as far as the events so far tell.
    held: BTreeSet<String>,
    /// Tags tag and pull events gave.
    explained_added: BTreeSet<String>,
    /// Tags events gave in this batch, in order, that the engine no longer shows after it: a
    /// tag made and removed within one batch is not in `removed`, its untag is one of these.
    /// Empty when the engine no longer has the image (its delete event names what went).
    added_then_gone: Vec<String>,
    /// The image's tags on the engine after the batch, when it still has the image.
    now: Option<BTreeSet<String>>,
    last_event_nano: i64,
    first_event_nano: Option<i64>,
    deleted_at: Option<i64>,
}

/// Stores a batch; returns the new events and the images whose engine state the events did
/// not fully explain (to settle later).
fn apply(
    tx: &Tx<'_>,
    fresh: &[RawEvent],
    touched: Touched,
) -> Result<(Vec<Event>, BTreeSet<String>), capstan_store::Error> {
    let mut unsettled = BTreeSet::new();
    let batch_end = fresh.iter().map(|e| e.time_nano).max().unwrap_or_default();
    let mut before: HashMap<String, Option<ImageRow>> = HashMap::new();
    let mut changes: HashMap<String, TagChanges> = HashMap::new();
    for (id, state) in &touched.images {
        let row = images::get(tx, id)?;
        let old: BTreeSet<&String> = row.iter().flat_map(|r| r.repo_tags.iter()).collect();
        let new: BTreeSet<&String> = state.iter().flat_map(|s| s.repo_tags.iter()).collect();
        changes.insert(
            id.clone(),
            TagChanges {
                removed: old.difference(&new).map(|t| (*t).clone()).collect(),
                held: old.iter().map(|t| (*t).clone()).collect(),
                now: state
                    .as_ref()
                    .map(|s| s.repo_tags.iter().cloned().collect()),
                ..TagChanges::default()
            },
        );
        before.insert(id.clone(), row);
    }

    let mut stored = Vec::new();
    let mut container_end: HashMap<&str, (i64, Option<i64>, Option<&RawEvent>)> = HashMap::new();
    for (e, image_id) in fresh.iter().zip(&touched.image_of) {
        let Some(event) = events::insert(tx, &reported(e, image_id.clone()))? else {
            continue;
        };
        match (e.kind.as_str(), image_id) {
            ("image", Some(id)) => {
                let change = changes.entry(id.clone()).or_default();
                change.last_event_nano = change.last_event_nano.max(e.time_nano);
                change.first_event_nano.get_or_insert(e.time_nano);
                image_step(tx, e, id, event.seq, change)?;
            }
            ("container", _) => {
                let entry = container_end
                    .entry(e.actor.as_str())
                    .or_insert((0, None, None));
                entry.0 = entry.0.max(e.time_nano);
                entry.2 = Some(e);
                if e.action == "destroy" {
                    entry.1 = Some(e.time_nano);
                }
            }
            _ => {}
        }
        stored.push(event);
    }

    for (id, state) in touched.images {
        let change = changes.remove(&id).unwrap_or_default();
        let row = before.remove(&id).flatten();
        let last_event_nano = if change.last_event_nano > 0 {
            change.last_event_nano
        } else {
            batch_end
        };
        let first_seen = row
            .as_ref()
            .map_or(change.first_event_nano.unwrap_or(batch_end), |r| {
                r.first_seen
            });
        // The row takes only what events explain; the rest is settled once the stream is quiet
        // (the event explaining it may be just behind this batch).
        let mut tags: BTreeSet<String> = row
            .iter()
            .filter(|r| r.deleted_nano.is_none())
            .flat_map(|r| r.repo_tags.iter().cloned())
            .collect();
        for t in &change.popped {
            tags.remove(t);
        }
        tags.extend(change.explained_added.iter().cloned());
        match state {
            Some(s) => {
                let engine_tags: BTreeSet<&String> = s.repo_tags.iter().collect();
                if engine_tags != tags.iter().collect() {
                    unsettled.insert(id.clone());
                }
                // references gone by the end of the batch are what it was last known as
                let last_tags = if tags.is_empty() {
                    change.popped.clone()
                } else {
                    Vec::new()
                };
                images::upsert(
                    tx,
                    &ImageRow {
                        id: s.id,
                        repo_tags: tags.into_iter().collect(),
                        last_tags,
                        repo_digests: s.repo_digests,
                        size: s.size,
                        created_nano: s.created.and_then(|c| c.timestamp_nanos_opt()),
                        layers: s.layers.unwrap_or_default(),
                        first_seen,
                        last_seen: batch_end,
                        deleted_nano: None,
                        last_event_nano,
                    },
                )?;
            }
            None => {
                let Some(mut row) = row.or_else(|| {
                    // never seen present (gone before we could look): known from its events,
                    // which must carry over to the batch that reads its delete
                    (change.deleted_at.is_some() || change.first_event_nano.is_some()).then(|| {
                        ImageRow {
                            id: id.clone(),
                            repo_tags: Vec::new(),
                            last_tags: Vec::new(),
                            repo_digests: Vec::new(),
                            size: 0,
                            created_nano: None,
                            layers: 0,
                            first_seen,
                            last_seen: first_seen,
                            deleted_nano: None,
                            last_event_nano,
                        }
                    })
                }) else {
                    continue;
                };
                if row.deleted_nano.is_some() {
                    continue;
                }
                row.last_event_nano = last_event_nano;
                match change.deleted_at {
                    Some(at) => {
                        // untag events did not name these: the delete took them
                        for t in &tags {
                            if !change.explained_added.contains(t) {
                                history(tx, &id, at, Lifecycle::Untagged, Some(t), true, None)?;
                            }
                        }
                        let mut last: BTreeSet<String> = row.last_tags.drain(..).collect();
                        last.extend(change.popped.iter().cloned());
                        last.extend(tags);
                        row.repo_tags = last.into_iter().collect();
                        images::upsert(tx, &row)?;
                        row.repo_tags.clear();
                        row.deleted_nano = Some(at);
                    }
                    None => {
                        // gone, and its delete event is still ahead in the stream
                        row.repo_tags = tags.into_iter().collect();
                        unsettled.insert(id.clone());
                    }
                }
                images::upsert(tx, &row)?;
            }
        }
    }

    for (id, state) in touched.containers {
        let (event_nano, destroyed, last) = container_end
            .get(id.as_str())
            .copied()
            .unwrap_or((batch_end, None, None));
        let seen = containers::seen(tx, &id)?;
        match (state, destroyed) {
            (Some(c), _) => containers::upsert(
                tx,
                &ContainerRow {
                    container: c,
                    first_seen: seen.map_or(event_nano, |s| s.0),
                    last_seen: batch_end,
                    removed_nano: None,
                    last_event_nano: event_nano,
                },
            )?,
            (None, Some(at)) if seen.is_some() => {
                containers::mark_removed(tx, &id, at, event_nano)?;
            }
            (None, Some(at)) => {
                // created and removed before capstan could look: keep what the events said
                let attr = |k: &str| {
                    last.and_then(|e| e.attributes.get(k))
                        .cloned()
                        .unwrap_or_default()
                };
                containers::upsert(
                    tx,
                    &ContainerRow {
                        container: Container {
                            id: id.clone(),
                            name: attr("name"),
                            image: attr("image"),
                            image_id: String::new(),
                            state: "removed".into(),
                            status: "removed".into(),
                            created: capstan_model::nanos_to_datetime(at),
                            labels: std::collections::BTreeMap::new(),
                        },
                        first_seen: at,
                        last_seen: at,
                        removed_nano: Some(at),
                        last_event_nano: event_nano,
                    },
                )?;
            }
            (None, None) => {}
        }
    }
    Ok((stored, unsettled))
}

/// Records the lifecycle step one image event means.
fn image_step(
    tx: &Tx<'_>,
    e: &RawEvent,
    id: &str,
    seq: i64,
    change: &mut TagChanges,
) -> Result<(), capstan_store::Error> {
    let reference = match e.action.as_str() {
        "pull" | "push" => Some(normalize_reference(&e.actor)),
        "tag" => e.attributes.get("name").map(|n| normalize_reference(n)),
        _ => None,
    };
    if let Some(r) = &reference
        && matches!(e.action.as_str(), "pull" | "tag")
    {
        change.explained_added.insert(r.clone());
        if change.now.as_ref().is_some_and(|now| !now.contains(r))
            && !change.added_then_gone.contains(r)
        {
            change.added_then_gone.push(r.clone());
        }
        if !change.held.insert(r.clone()) {
            // it held this reference already: an untag we could not name took it in between
            images::claim_untag(tx, id, r)?;
        }
        if e.action == "tag" && !images::has_history(tx, id, ORIGINS)? {
            history(
                tx,
                id,
                e.time_nano,
                Lifecycle::Built,
                Some(r),
                true,
                Some(seq),
            )?;
        }
    }
    match e.action.as_str() {
        "untag" => {
            // the engine does not say which reference went: take it from the inventory diff, or
            // else it is one this batch tagged and the engine no longer shows (oldest first)
            let tag = if change.removed.is_empty() {
                let next = change
                    .added_then_gone
                    .iter()
                    .position(|t| change.held.contains(t));
                next.map(|i| {
                    let t = change.added_then_gone.remove(i);
                    // made and gone within the batch: the row never holds it
                    change.explained_added.remove(&t);
                    t
                })
            } else {
                Some(change.removed.remove(0))
            };
            if let Some(t) = &tag {
                change.held.remove(t);
            }
            change.popped.extend(tag.clone());
            history(
                tx,
                id,
                e.time_nano,
                Lifecycle::Untagged,
                tag.as_deref(),
                false,
                Some(seq),
            )
        }
        "import" | "load" => {
            // `docker import repo:tag` tags before it reports the import: that tag was no build
            if images::history_only(tx, id, &[Lifecycle::Built, Lifecycle::Tagged])? {
                images::remove_history(tx, id, Lifecycle::Built)?;
            }
            let step = Lifecycle::from_action(&e.action).unwrap_or(Lifecycle::Imported);
            history(tx, id, e.time_nano, step, None, false, Some(seq))
        }
        "delete" => {
            change.deleted_at = Some(e.time_nano);
            // an image goes with every reference it held: name the untags that could not
            // be named when they were read (the engine may have changed again since)
            let held: Vec<String> = std::mem::take(&mut change.held).into_iter().collect();
            for t in held {
                if images::claim_untag(tx, id, &t)? {
                    change.popped.push(t);
                }
            }
            history(
                tx,
                id,
                e.time_nano,
                Lifecycle::Deleted,
                None,
                false,
                Some(seq),
            )
        }
        action => match Lifecycle::from_action(action) {
            Some(step) => history(
                tx,
                id,
                e.time_nano,
                step,
                reference.as_deref(),
                false,
                Some(seq),
            ),
            None => Ok(()),
        },
    }
}

pub(crate) fn history(
    tx: &Tx<'_>,
    image_id: &str,
    time_nano: i64,
    action: Lifecycle,
    reference: Option<&str>,
    inferred: bool,
    event_seq: Option<i64>,
) -> Result<(), capstan_store::Error> {
    images::add_history(
        tx,
        &HistoryRow {
            image_id: image_id.to_owned(),
            time_nano,
            action,
            reference: reference.map(str::to_owned),
            inferred,
            event_seq,
        },
    )
}

/// An event the engine reported, as the journal stores it (about `image_id`, when it is about
/// an image).
pub(crate) fn reported(e: &RawEvent, image_id: Option<String>) -> NewEvent {
    NewEvent {
        time_nano: e.time_nano,
        identity: e.identity(),
        kind: e.kind.clone(),
        action: e.action.clone(),
        actor: e.actor.clone(),
        attributes: e.attributes.clone(),
        scope: e.scope.clone(),
        image_id,
        inferred: false,
    }
}
