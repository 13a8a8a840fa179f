//! Kubernetes names: what a DNS label (a Service, a container) and an object name may be.

/// The longest DNS label (and label value) Kubernetes takes.
pub const MAX_LABEL: usize = 63;

/// Whether `name` is a DNS-1035 label, as a Service's name must be: lowercase letters,
/// digits and `-`, starting with a letter, ending with a letter or digit, at most 63.
///
/// # Errors
/// Why it is not, said for the user.
pub fn dns_label(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let first = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let last = name
        .bytes()
        .last()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.len() > MAX_LABEL {
        return Err(format!(
            "{name} is {} characters; a Kubernetes name takes at most {MAX_LABEL}",
            name.len()
        ));
    }
    if !(ok_chars && first && last) {
        return Err(format!(
            "{name:?} is no DNS label (lowercase letters, digits and '-', starting with a letter \
             and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// `PREFIX-PART` as an object name: `PART` lowercased with `_` and `.` as `-`; refused when
/// the result is no DNS label of at most `max` characters.
///
/// # Errors
/// Why not, said for the user.
pub fn object_name(prefix: &str, part: &str, max: usize) -> Result<String, String> {
    let part: String = part
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let name = format!("{prefix}-{part}");
    dns_label(&name)?;
    if name.len() > max {
        return Err(format!(
            "{name} is {} characters; here a Kubernetes name takes at most {max} (the cluster adds to it)",
            name.len()
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_dns_label_rules() {
        assert!(dns_label("web").is_ok());
        assert!(dns_label("web-2").is_ok());
        for bad in ["Web", "my_db", "2web", "web-", "", &"a".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad}");
        }
        assert_eq!(
            object_name("shop", "my_db.cfg", 63).unwrap(),
            "shop-my-db-cfg"
        );
        assert!(object_name("shop", &"x".repeat(50), 52).is_err());
    }
}
