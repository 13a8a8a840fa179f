//! The names capstan turns into paths, container names and labels: an app (a Compose project),
//! a service, a config or a secret. Each is checked before anything is made of it, so that no
//! name can climb out of `<data>/apps/<app>` (`..`, `/`, a `%2F` decoded from a URL) or name
//! a hidden file.

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {name:?} {why}")]
pub struct NameError {
    /// `app`, `service`, `config` or `secret`.
    pub kind: &'static str,
    pub name: String,
    /// What the name must be.
    pub why: &'static str,
}

/// The longest name of any kind.
const MAX_LEN: usize = 128;

/// An app's name, as Compose allows a project's: lowercase letters, digits, `-` and `_`,
/// starting with a letter or a digit.
///
/// # Errors
/// Says what the name must be.
pub fn check_app_name(name: &str) -> Result<(), NameError> {
    let ok = name.len() <= MAX_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        return Ok(());
    }
    Err(NameError {
        kind: "app",
        name: name.to_owned(),
        why: "must be lowercase letters, digits, `-` and `_`, starting with a letter or digit",
    })
}

/// A service's, a config's or a secret's name (`kind`): letters, digits, `.`, `-` and `_`,
/// starting with a letter or a digit (so never `.` or `..`, never a hidden file).
///
/// # Errors
/// Says what the name must be.
pub fn check_object_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    let ok = name.len() <= MAX_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        return Ok(());
    }
    Err(NameError {
        kind,
        name: name.to_owned(),
        why: "must be letters, digits, `.`, `-` and `_`, starting with a letter or digit",
    })
}

/// What a replica set aside by a rollout is called while it stops: its slot's name, marked,
/// and its id's first 12 characters (unique).
pub fn retiring(canonical: &str, id: &str) -> String {
    format!("{canonical}{RETIRING}{}", id.get(..12).unwrap_or(id))
}

/// The mark in the name of a replica set aside ([`retiring`]).
const RETIRING: &str = "-retiring-";

/// Whether `name` is a replica set aside by a rollout ([`retiring`]): out of rotation, stopping
/// in the background, no longer part of its app.
pub fn is_retiring(name: &str) -> bool {
    name.rsplit_once(RETIRING)
        .is_some_and(|(_, id)| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_apps_directory_are_refused() {
        for good in ["web", "my-app_2", "0day"] {
            check_app_name(good).unwrap();
        }
        for bad in [
            "", "..", "../x", "a/b", "Web", "-x", "_x", "a b", "a\0b", "x%2F..",
        ] {
            assert!(check_app_name(bad).is_err(), "{bad:?}");
        }
        for good in ["db_password", "site.conf", "API-key", "web"] {
            check_object_name("secret", good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../../../admin.token",
            ".hidden",
            "a/b",
            "a\\b",
            "x y",
        ] {
            let e = check_object_name("secret", bad).unwrap_err();
            assert!(e.to_string().starts_with("secret name"), "{e}");
        }
        assert!(check_app_name(&"a".repeat(129)).is_err());
    }
}
