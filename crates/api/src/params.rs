//! Strict parsing of what a request sends: unknown query parameters and malformed values are
//! rejected by name, and a body is the JSON object its document says.

use capstan_store::{Cursor, EventFilter};
use chrono::Utc;

use crate::ApiError;

/// Query pairs as sent, in order.
pub(crate) type Pairs = Vec<(String, String)>;

/// Event types the engine reports, and `capstan` (capstan's own), `task` (a Swarm task's
/// failure, which capstan journals: Swarm reports it by no event) and `pod` (what a Kubernetes
/// target's containers run, and their failed pulls).
const EVENT_TYPES: &[&str] = &[
    "builder",
    "capstan",
    "config",
    "container",
    "daemon",
    "image",
    "network",
    "node",
    "plugin",
    "pod",
    "secret",
    "service",
    "task",
    "volume",
];

/// Default and largest page sizes.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A request body read as `T`, which must be a JSON object: serde reads a struct from an array
/// too (its fields in order), which no document of ours allows. The error is serde's (or says
/// the body is no object), for the caller to put in its own words.
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => serde_json::from_slice(body).map_err(|e| e.to_string()),
        Some(_) => Err("the body is not a JSON object".to_owned()),
    }
}

/// Rejects any parameter not in `allowed`.
pub(crate) fn only(pairs: &Pairs, allowed: &[&str]) -> Result<(), ApiError> {
    for (k, _) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_param(
                k,
                format!("unknown parameter (accepted: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A boolean parameter (`true`/`false`/`1`/`0`); absent is `None`.
pub(crate) fn flag(pairs: &Pairs, name: &str) -> Result<Option<bool>, ApiError> {
    match last(pairs, name) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_param(
            name,
            format!("{v:?} is not true or false"),
        )),
    }
}

/// A number parameter that fits `T`; absent is `None`.
pub(crate) fn number<T: std::str::FromStr>(
    pairs: &Pairs,
    name: &str,
) -> Result<Option<T>, ApiError> {
    last(pairs, name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| ApiError::bad_param(name, format!("{v:?} is not a number that fits")))
        })
        .transpose()
}

/// The last value given for `name`.
pub(crate) fn last<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Every value of a repeatable parameter; commas also separate values.
fn all(pairs: &Pairs, name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parsed event filters; `image` keys still need resolving against the inventory.
#[derive(Debug)]
pub(crate) struct EventParams {
    pub filter: EventFilter,
    pub images: Vec<String>,
    pub limit: usize,
}

pub(crate) const EVENT_LIST_PARAMS: &[&str] = &[
    "type", "action", "image", "actor", "since", "until", "inferred", "host", "cursor", "limit",
];
pub(crate) const EVENT_STREAM_PARAMS: &[&str] = &[
    "type", "action", "image", "actor", "since", "until", "inferred", "host",
];

/// The event filters as the OpenAPI document lists them (handlers read the raw pairs
/// strictly, with [`events`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct EventFilterDoc {
    /// event type (image, container, capstan, ...); repeatable, comma-separated
    r#type: Option<String>,
    /// action (pull, tag, start, alert_firing, ...); repeatable
    action: Option<String>,
    /// an image id, id prefix or reference; repeatable
    image: Option<String>,
    /// the actor (container name or id, reference); repeatable
    actor: Option<String>,
    /// RFC 3339 time or an age such as 15m, 2h, 1d
    since: Option<String>,
    /// RFC 3339 time or an age
    until: Option<String>,
    /// only inferred (true) or only reported (false) events
    inferred: Option<bool>,
    /// the fleet host they happened on; `local`: the hub's own
    host: Option<String>,
}

/// Paging, as the OpenAPI document lists it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageDoc {
    /// the next_cursor of the previous page
    cursor: Option<String>,
    /// page size, 1 to 1000 (default 100)
    limit: Option<u32>,
}

pub(crate) fn events(pairs: &Pairs, allowed: &[&str]) -> Result<EventParams, ApiError> {
    only(pairs, allowed)?;
    let now = Utc::now();
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        last(pairs, name)
            .map(|v| {
                capstan_model::parse_time_or_ago(v, now).map_err(|e| ApiError::bad_param(name, e))
            })
            .transpose()
    };
    let kinds = all(pairs, "type");
    if let Some(bad) = kinds.iter().find(|k| !EVENT_TYPES.contains(&k.as_str())) {
        return Err(ApiError::bad_param(
            "type",
            format!(
                "unknown event type {bad:?} (one of: {})",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    let cursor = last(pairs, "cursor")
        .map(|c| {
            Cursor::decode(c).ok_or_else(|| {
                ApiError::bad_param(
                    "cursor",
                    "not a cursor this server issued; start over without it",
                )
            })
        })
        .transpose()?;
    let limit = match last(pairs, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_param(
                    "limit",
                    format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let filter = EventFilter {
        kinds,
        actions: all(pairs, "action"),
        image_ids: Vec::new(),
        actor: last(pairs, "actor").map(str::to_owned),
        since_nano: time("since")?,
        until_nano: time("until")?,
        after_seq: None,
        cursor,
        inferred: flag(pairs, "inferred")?,
        host: last(pairs, "host").map(str::to_owned),
    };
    if let (Some(s), Some(u)) = (filter.since_nano, filter.until_nano)
        && s > u
    {
        return Err(ApiError::bad_param("until", "is before since"));
    }
    Ok(EventParams {
        filter,
        images: all(pairs, "image"),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Pairs {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_event_filters() {
        let p = events(
            &pairs(&[
                ("type", "image,container"),
                ("action", "pull"),
                ("action", "tag"),
                ("since", "1h"),
                ("limit", "5"),
            ]),
            EVENT_LIST_PARAMS,
        )
        .unwrap();
        assert_eq!(p.filter.kinds, ["image", "container"]);
        assert_eq!(p.filter.actions, ["pull", "tag"]);
        assert!(p.filter.since_nano.is_some());
        assert_eq!(p.limit, 5);
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases = [
            (("colour", "red"), "\"colour\""),
            (("since", "last tuesday"), "\"since\""),
            (("until", "2026-99-01"), "\"until\""),
            (("cursor", "zzz"), "\"cursor\""),
            (("limit", "0"), "\"limit\""),
            (("type", "spaceship"), "\"type\""),
            (("inferred", "maybe"), "\"inferred\""),
        ];
        for ((k, v), name) in cases {
            let err = events(&pairs(&[(k, v)]), EVENT_LIST_PARAMS).unwrap_err();
            assert!(err.message().contains(name), "{k}={v}: {err:?}");
        }
        // a stream has no pages
        assert!(events(&pairs(&[("cursor", "1.1")]), EVENT_STREAM_PARAMS).is_err());
    }

    #[test]
    fn a_body_is_an_object_even_where_every_field_has_a_default() {
        #[derive(serde::Deserialize, Debug, Default, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Asked {
            #[serde(default)]
            uses: Option<u32>,
        }
        // serde alone takes both arrays, which the document does not allow
        assert!(serde_json::from_slice::<Asked>(b"[]").is_ok());
        for array in [&b"[]"[..], b" [2]", b"null", b"\"x\""] {
            let err = json_object::<Asked>(array).unwrap_err();
            assert!(err.contains("not a JSON object"), "{err}");
        }
        assert_eq!(json_object::<Asked>(b" {}"), Ok(Asked::default()));
        assert_eq!(
            json_object::<Asked>(b"{\"uses\": 2}").unwrap().uses,
            Some(2)
        );
        // an empty body and unknown fields keep serde's words
        assert!(json_object::<Asked>(b"").unwrap_err().contains("EOF"));
        assert!(
            json_object::<Asked>(b"{\"use\": 2}")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
