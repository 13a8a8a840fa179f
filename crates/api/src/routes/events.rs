use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use capstan_model::{Event, EventPage};
use capstan_store::{Cursor, EventFilter, Store};
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::params::{self, EVENT_LIST_PARAMS, EVENT_STREAM_PARAMS, Pairs};
use crate::{ApiError, AppState};

/// Most stored events a stream replays for `since` before going live.
const STREAM_BACKLOG: usize = 10_000;

/// Turns `image=` keys into the ids and actors to match: the resolved id, and the key itself
/// (pull and push events name a reference).
async fn resolve_images(store: &Store, keys: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for key in keys {
        if let Some(id) = store.resolve_image(key.clone()).await? {
            out.push(id);
        }
        out.push(key);
    }
    Ok(out)
}

/// `GET /api/v1/events`: newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(params::EventFilterDoc, params::PageDoc),
    responses(
        (status = 200, description = "newest first", body = EventPage)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<EventPage>, ApiError> {
    let p = params::events(&pairs, EVENT_LIST_PARAMS)?;
    page(&state, p).await.map(Json)
}

/// One page of the events `p` picks, newest first.
pub(crate) async fn page(state: &AppState, p: params::EventParams) -> Result<EventPage, ApiError> {
    let mut filter = p.filter;
    filter.image_ids = resolve_images(&state.store, p.images).await?;
    // one more than asked tells whether another page exists
    let mut events = state.store.events(filter, p.limit + 1).await?;
    let next_cursor = if events.len() > p.limit {
        events.truncate(p.limit);
        events.last().map(|e| {
            Cursor {
                time_nano: e.time_nano,
                seq: e.seq,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(EventPage {
        events,
        next_cursor,
    })
}

/// `GET /api/v1/events/stream`: Server-Sent Events, one `event` per journaled event (oldest
/// first), with the same filters; with `since`, stored events from then on come first.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    tag = "events",
    params(params::EventFilterDoc),
    responses(
        (status = 200, description = "Server-Sent Events: `event: event`, `id: <seq>`, data an Event; stored events from since first", content_type = "text/event-stream", body = Event)
    )
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let p = params::events(&pairs, EVENT_STREAM_PARAMS)?;
    let mut filter = p.filter;
    filter.image_ids = resolve_images(&state.store, p.images).await?;
    // subscribe before reading the backlog, so nothing falls between the two
    let live = state.live.subscribe();
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(pump(state, filter, live, tx));
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Feeds one SSE client: backlog, then live events; on lag, refills from the store by sequence
/// number, so a slow client misses nothing. Ends when the client goes or the daemon stops.
async fn pump(
    state: AppState,
    filter: EventFilter,
    mut live: broadcast::Receiver<Event>,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    let mut last_seq = 0;
    let send = |e: &Event| {
        SseEvent::default()
            .id(e.seq.to_string())
            .event("event")
            .json_data(e)
    };
    if filter.since_nano.is_some() {
        match backlog(&state.store, &filter, None).await {
            Ok(events) => {
                for e in events {
                    last_seq = last_seq.max(e.seq);
                    let Ok(frame) = send(&e) else { continue };
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => tracing::warn!(error = ?err, "event stream backlog failed"),
        }
    }
    loop {
        let received = tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tx.closed() => return,
            r = live.recv() => r,
        };
        let batch = match received {
            Ok(e) => vec![e],
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match backlog(&state.store, &filter, Some(last_seq)).await {
                    Ok(events) => events,
                    Err(_) => return,
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for e in batch {
            if e.seq <= last_seq || !filter.matches(&e) {
                continue;
            }
            last_seq = e.seq;
            let Ok(frame) = send(&e) else { continue };
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
    }
}

/// Stored events matching `filter` (after `after_seq`), oldest first.
async fn backlog(
    store: &Store,
    filter: &EventFilter,
    after_seq: Option<i64>,
) -> Result<Vec<Event>, ApiError> {
    let mut f = filter.clone();
    f.after_seq = after_seq;
    let mut events = store.events(f, STREAM_BACKLOG).await?;
    events.sort_by_key(|e| e.seq);
    Ok(events)
}
