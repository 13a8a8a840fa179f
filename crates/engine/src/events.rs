use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::{Engine, Error};

/// One event as the engine reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// Engine time in nanoseconds since the epoch.
    pub time_nano: i64,
    /// `image`, `container`, `network`, ...
    pub kind: String,
    /// `pull`, `tag`, `start`, ...
    pub action: String,
    /// Actor id (an image id, a reference for pull/push, a container id, ...).
    pub actor: String,
    /// Actor attributes, sorted so that the identity is stable.
    pub attributes: BTreeMap<String, String>,
    /// `local` or `swarm`.
    pub scope: Option<String>,
}

impl RawEvent {
    /// A 64-bit identity of the event (FNV-1a over type, action, actor and attributes). Two
    /// deliveries of one event (a replay after a reconnect) have the same identity and the same
    /// time; the journal deduplicates on the pair.
    pub fn identity(&self) -> i64 {
        let mut h = Fnv::default();
        h.write(self.kind.as_bytes());
        h.write(self.action.as_bytes());
        h.write(self.actor.as_bytes());
        for (k, v) in &self.attributes {
            h.write(k.as_bytes());
            h.write(v.as_bytes());
        }
        h.0 as i64
    }

    fn from_message(msg: bollard::models::EventMessage) -> Self {
        let time_nano = msg
            .time_nano
            .or_else(|| msg.time.map(|s| s.saturating_mul(1_000_000_000)))
            .unwrap_or_default();
        let (actor, attributes) = msg.actor.map_or_else(Default::default, |a| {
            (
                a.id.unwrap_or_default(),
                a.attributes.unwrap_or_default().into_iter().collect(),
            )
        });
        Self {
            time_nano,
            kind: msg.typ.map(|t| t.to_string()).unwrap_or_default(),
            action: msg.action.unwrap_or_default(),
            actor,
            attributes,
            scope: msg.scope.map(|s| s.to_string()).filter(|s| !s.is_empty()),
        }
    }
}

/// FNV-1a, 64 bit: tiny, stable across releases (unlike `DefaultHasher`), good enough as a
/// dedup key together with the nanosecond timestamp. Fields are separated by a 0xff byte.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(std::iter::once(&0xff)) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Formats nanoseconds as the engine's `seconds.nanoseconds` timestamp.
fn engine_timestamp(nanos: i64) -> String {
    format!(
        "{}.{:09}",
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000)
    )
}

/// How many past events the engine keeps for replay (dockerd's `eventsLimit`).
pub const EVENT_BUFFER: usize = 256;

impl Engine {
    /// Streams engine events of all types. With `since`, the engine first replays what it still
    /// holds (its last 256 events) from that time on, inclusive; with `until`, the stream ends
    /// once that time is reached. The stream ends when the engine goes away.
    pub fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> BoxStream<'static, Result<RawEvent, Error>> {
        self.event_stream(since, until, HashMap::new())
    }

    /// Streams a Swarm manager's cluster events (`swarm` scope: services, nodes, secrets,
    /// configs, overlay networks), replaying first what it still holds since `since`.
    pub fn swarm_events(&self, since: Option<i64>) -> BoxStream<'static, Result<RawEvent, Error>> {
        self.event_stream(
            since,
            None,
            HashMap::from([("scope".to_owned(), vec!["swarm".to_owned()])]),
        )
    }

    fn event_stream(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filters: HashMap<String, Vec<String>>,
    ) -> BoxStream<'static, Result<RawEvent, Error>> {
        let options = EventsOptions {
            since: since.map(engine_timestamp),
            until: until.map(engine_timestamp),
            filters: Some(filters),
        };
        let host = self.host.clone();
        match self.client() {
            Ok(docker) => docker
                .events(Some(options))
                .map(move |item| {
                    item.map(RawEvent::from_message)
                        .map_err(|e| Error::from_bollard(&host, e))
                })
                .boxed(),
            Err(err) => futures_util::stream::once(async { Err(err) }).boxed(),
        }
    }

    /// The events the engine still holds (its last [`EVENT_BUFFER`] events) from `since` to
    /// `until`, both inclusive and in the past: a bounded question, answered at once. Fewer than
    /// [`EVENT_BUFFER`] events back means the answer covers the whole window.
    pub async fn events_between(&self, since: i64, until: i64) -> Result<Vec<RawEvent>, Error> {
        let options = EventsOptions {
            since: Some(engine_timestamp(since)),
            until: Some(engine_timestamp(until)),
            filters: Some(HashMap::new()),
        };
        let mut stream = self.client()?.events(Some(options));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.push(RawEvent::from_message(item.map_err(|e| self.classify(e))?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_timestamps_keep_nanoseconds() {
        assert_eq!(
            engine_timestamp(1_700_000_000_000_000_001),
            "1700000000.000000001"
        );
        assert_eq!(engine_timestamp(0), "0.000000000");
    }

    #[test]
    fn identity_depends_on_every_field_but_time() {
        let a = RawEvent {
            time_nano: 1,
            kind: "image".into(),
            action: "tag".into(),
            actor: "sha256:ab".into(),
            attributes: [("name".to_owned(), "x:1".to_owned())].into(),
            scope: None,
        };
        let mut b = a.clone();
        b.time_nano = 2;
        assert_eq!(a.identity(), b.identity());
        b.attributes.insert("name".into(), "x:2".into());
        assert_ne!(a.identity(), b.identity());
        let mut c = a.clone();
        c.action = "untag".into();
        assert_ne!(a.identity(), c.identity());
        // the separator keeps ("ab","c") apart from ("a","bc")
        let mut d = a.clone();
        d.kind = "imag".into();
        d.action = "etag".into();
        assert_ne!(a.identity(), d.identity());
    }
}
