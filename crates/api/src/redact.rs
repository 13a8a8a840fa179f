//! What the API shows of a release's model: environment values, build arguments and inline
//! config and secret contents become placeholders, for every role. A placeholder is an HMAC of
//! the value under a key this process drew at start, so two releases' placeholders differ
//! exactly when their values do (a diff still shows that a value changed), and nothing about
//! the value can be guessed from it.
//!
//! A model edited from what the API showed (the dashboard's deploy form) comes back with those
//! placeholders: each is put back to the running release's value it stands for, and one that
//! stands for none is refused.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use capstan_compose::Project;
use capstan_compose::model::FileObject;

use crate::{ApiError, Code};

const PREFIX: &str = "<redacted:";

/// The key placeholders are made with; drawn once per process.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Read as _;
        let mut key = [0_u8; 32];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .is_err()
        {
            // no randomness: placeholders then carry no digest at all (see `placeholder`)
            key = [0; 32];
        }
        key
    })
}

/// The placeholder of `value`.
fn placeholder(value: &str) -> String {
    use hmac::Mac as _;
    let key = key();
    if key == &[0; 32] {
        return format!("{PREFIX}unavailable>");
    }
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return format!("{PREFIX}unavailable>");
    };
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("{PREFIX}{}>", crate::auth::hex(&digest[..6]))
}

/// The placeholder of a config's or secret's content whose digest is `digest` (a secret the
/// ledger keeps only sealed is known there by its digest alone).
fn content_placeholder(digest: &str) -> String {
    placeholder(&format!("content {digest}"))
}

/// Each place of a model that holds a value only its deployers may read, by its key
/// (`services.web.environment.DB_PASSWORD`).
fn values(project: &mut Project) -> BTreeMap<String, &mut String> {
    let mut out = BTreeMap::new();
    for (name, s) in &mut project.services {
        for (k, v) in &mut s.environment {
            if let Some(v) = v {
                out.insert(format!("services.{name}.environment.{k}"), v);
            }
        }
        if let Some(build) = &mut s.build {
            for (k, v) in &mut build.args {
                if let Some(v) = v {
                    out.insert(format!("services.{name}.build.args.{k}"), v);
                }
            }
        }
    }
    out
}

/// Each config and secret of a model, by its key in the files of a request (`secrets/NAME`).
fn objects(project: &mut Project) -> BTreeMap<String, &mut FileObject> {
    let mut out = BTreeMap::new();
    for (kind, objects) in [
        ("configs", &mut project.configs),
        ("secrets", &mut project.secrets),
    ] {
        for (name, o) in objects {
            out.insert(format!("{kind}/{name}"), o);
        }
    }
    out
}

/// Whether the ledger keeps `o`'s content only sealed: it names no source of its own.
fn sealed(key: &str, o: &FileObject) -> bool {
    key.starts_with("secrets/")
        && o.file.is_none()
        && o.environment.is_none()
        && o.content.is_none()
        && o.external != Some(true)
}

/// The digest a config's or secret's content is known by: the one the release recorded, else
/// that of the content the model carries.
fn digest_of(key: &str, o: &FileObject, digests: &BTreeMap<String, String>) -> Option<String> {
    digests.get(key).cloned().or_else(|| {
        o.content
            .as_ref()
            .map(|c| capstan_deploy::plan::fnv_hex(c.as_bytes()))
    })
}

/// The model as the API shows it: every value a placeholder, and a placeholder for the
/// content of each inline config and each secret the ledger keeps sealed (`digests`: what the
/// release recorded, see [`capstan_deploy::ran_files`]).
pub(crate) fn redacted(
    model: &serde_json::Value,
    digests: &BTreeMap<String, String>,
) -> serde_json::Value {
    let Ok(mut project) = serde_json::from_value::<Project>(model.clone()) else {
        // a model that does not parse is shown as nothing rather than as it is
        return serde_json::Value::Null;
    };
    for value in values(&mut project).into_values() {
        *value = placeholder(value);
    }
    for (key, o) in objects(&mut project) {
        if o.content.is_some() || sealed(&key, o) {
            o.content = Some(digest_of(&key, o, digests).map_or_else(
                || format!("{PREFIX}unavailable>"),
                |d| content_placeholder(&d),
            ));
        }
    }
    serde_json::to_value(&project).unwrap_or(serde_json::Value::Null)
}

/// Puts back the values whose placeholders `project` carries, from `running` (the release
/// running now, and the digests it recorded). Answers the secrets whose placeholders stand for
/// a value the ledger keeps only sealed: their content is left out, to be read from the vault.
///
/// # Errors
/// A placeholder that stands for no value of the running release at the same key.
pub(crate) fn restore(
    project: &mut Project,
    running: Option<&(Project, BTreeMap<String, String>)>,
) -> Result<Vec<String>, ApiError> {
    let unknown = |key: &str, value: &str| {
        ApiError::new(
            Code::BadRequest,
            format!(
                "{key}: {value} stands for a value the running release does not have there (or \
                 capstan restarted since it was shown); give the value itself"
            ),
        )
    };
    let (mut was, digests) = running.cloned().unwrap_or_default();
    let known = values(&mut was);
    for (key, value) in values(project) {
        if !value.starts_with(PREFIX) {
            continue;
        }
        match known.get(&key) {
            Some(old) if placeholder(old) == *value => value.clone_from(old),
            _ => return Err(unknown(&key, value)),
        }
    }
    let mut was = running.map(|(p, _)| p.clone()).unwrap_or_default();
    let known = objects(&mut was);
    let mut from_vault = Vec::new();
    for (key, o) in objects(project) {
        let Some(value) = o.content.clone().filter(|c| c.starts_with(PREFIX)) else {
            continue;
        };
        let shown_as = |old: &FileObject| {
            digest_of(&key, old, &digests).map(|d| content_placeholder(&d)) == Some(value.clone())
        };
        match known.get(&key) {
            Some(old) if sealed(&key, old) && shown_as(old) => {
                o.content = None;
                from_vault.push(key.trim_start_matches("secrets/").to_owned());
            }
            Some(old) if old.content.is_some() && shown_as(old) => {
                o.content.clone_from(&old.content);
            }
            _ => {
                return Err(unknown(
                    &format!("{}.content", key.replacen('/', ".", 1)),
                    &value,
                ));
            }
        }
    }
    Ok(from_vault)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(password: &str) -> Project {
        serde_json::from_value(serde_json::json!({
            "name": "shop",
            "services": {"web": {
                "image": "busybox",
                "environment": {"DB_PASSWORD": password, "PASSTHROUGH": null},
            }},
            "secrets": {"key": {"content": format!("k-{password}")}},
        }))
        .unwrap()
    }

    fn shown(p: &Project, digests: &BTreeMap<String, String>) -> serde_json::Value {
        redacted(&serde_json::to_value(p).unwrap(), digests)
    }

    #[test]
    fn values_are_shown_as_placeholders_and_come_back_from_the_running_release() {
        let none = BTreeMap::new();
        let running = project("s3cret");
        let shown_once = shown(&running, &none);
        let text = shown_once.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted:"), "{text}");
        assert_eq!(
            shown_once["services"]["web"]["environment"]["PASSTHROUGH"],
            serde_json::Value::Null
        );
        // the same value, the same placeholder; another value, another
        assert_eq!(shown_once, shown(&running, &none));
        let other = shown(&project("other"), &none);
        assert_ne!(
            shown_once["services"]["web"]["environment"]["DB_PASSWORD"],
            other["services"]["web"]["environment"]["DB_PASSWORD"]
        );
        // edited from what was shown: the placeholders become the values again
        let mut edited: Project = serde_json::from_value(shown_once.clone()).unwrap();
        let ran = (running.clone(), none.clone());
        assert!(restore(&mut edited, Some(&ran)).unwrap().is_empty());
        assert_eq!(edited, running);
        // a placeholder of another release's value is refused, naming the key
        let mut foreign: Project = serde_json::from_value(other).unwrap();
        let e = restore(&mut foreign, Some(&ran)).unwrap_err();
        assert!(
            e.message()
                .starts_with("services.web.environment.DB_PASSWORD: <redacted:"),
            "{}",
            e.message()
        );
        let mut first: Project = serde_json::from_value(shown_once).unwrap();
        assert!(
            restore(&mut first, None).is_err(),
            "nothing running to restore from"
        );
    }

    #[test]
    fn a_secret_kept_only_sealed_is_shown_by_its_digest_and_comes_back_from_the_vault() {
        // the ledger's form: the secret's content is gone, its digest recorded
        let mut running = project("s3cret");
        running.secrets.get_mut("key").unwrap().content = None;
        let digests = BTreeMap::from([("secrets/key".to_owned(), "0123abcd".to_owned())]);
        let shown_once = shown(&running, &digests);
        let placeholder = shown_once["secrets"]["key"]["content"].as_str().unwrap();
        assert!(placeholder.starts_with(PREFIX), "{shown_once}");
        // another version, another placeholder
        let other = BTreeMap::from([("secrets/key".to_owned(), "ffff0000".to_owned())]);
        assert_ne!(
            shown(&running, &other)["secrets"]["key"]["content"],
            placeholder
        );
        // edited from what was shown: the secret is to be read from the vault
        let mut edited: Project = serde_json::from_value(shown_once.clone()).unwrap();
        let ran = (running.clone(), digests);
        assert_eq!(restore(&mut edited, Some(&ran)).unwrap(), ["key"]);
        assert_eq!(edited.secrets["key"].content, None);
        // shown for another version: refused
        let mut stale: Project = serde_json::from_value(shown(&running, &other)).unwrap();
        assert!(restore(&mut stale, Some(&ran)).is_err());
    }
}
