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
    for (kind, objects) in [
        ("configs", &mut project.configs),
        ("secrets", &mut project.secrets),
    ] {
        for (name, o) in objects {
            if let Some(content) = &mut o.content {
                out.insert(format!("{kind}.{name}.content"), content);
            }
        }
    }
    out
}

/// The model as the API shows it: every value a placeholder.
pub(crate) fn redacted(model: &serde_json::Value) -> serde_json::Value {
    let Ok(mut project) = serde_json::from_value::<Project>(model.clone()) else {
        // a model that does not parse is shown as nothing rather than as it is
        return serde_json::Value::Null;
    };
    for value in values(&mut project).into_values() {
        *value = placeholder(value);
    }
    serde_json::to_value(&project).unwrap_or(serde_json::Value::Null)
}

/// Puts back the values whose placeholders `project` carries, from `running` (the release
/// running now).
///
/// # Errors
/// A placeholder that stands for no value of the running release at the same key.
pub(crate) fn restore(project: &mut Project, running: Option<&Project>) -> Result<(), ApiError> {
    let mut running = running.cloned();
    let known = running.as_mut().map(values).unwrap_or_default();
    for (key, value) in values(project) {
        if !value.starts_with(PREFIX) {
            continue;
        }
        match known.get(&key) {
            Some(old) if placeholder(old) == *value => value.clone_from(old),
            _ => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!(
                        "{key}: {value} stands for a value the running release does not have \
                         there (or capstan restarted since it was shown); give the value itself"
                    ),
                ));
            }
        }
    }
    Ok(())
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

    #[test]
    fn values_are_shown_as_placeholders_and_come_back_from_the_running_release() {
        let running = project("s3cret");
        let shown = redacted(&serde_json::to_value(&running).unwrap());
        let text = shown.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted:"), "{text}");
        assert_eq!(
            shown["services"]["web"]["environment"]["PASSTHROUGH"],
            serde_json::Value::Null
        );
        // the same value, the same placeholder; another value, another
        assert_eq!(shown, redacted(&serde_json::to_value(&running).unwrap()));
        let other = redacted(&serde_json::to_value(project("other")).unwrap());
        assert_ne!(
            shown["services"]["web"]["environment"]["DB_PASSWORD"],
            other["services"]["web"]["environment"]["DB_PASSWORD"]
        );
        // edited from what was shown: the placeholders become the values again
        let mut edited: Project = serde_json::from_value(shown.clone()).unwrap();
        restore(&mut edited, Some(&running)).unwrap();
        assert_eq!(edited, running);
        // a placeholder of another release's value is refused, naming the key
        let mut foreign: Project = serde_json::from_value(other).unwrap();
        let e = restore(&mut foreign, Some(&running)).unwrap_err();
        assert!(
            e.message().starts_with("secrets.key.content: <redacted:"),
            "{}",
            e.message()
        );
        let mut first: Project = serde_json::from_value(shown).unwrap();
        assert!(
            restore(&mut first, None).is_err(),
            "nothing running to restore from"
        );
    }
}
