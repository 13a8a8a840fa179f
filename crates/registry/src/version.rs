//! Which tag is newer, done the way that fails least in practice: a leading `v` is dropped;
//! the text after the first `-` is a variant (`-alpine`, `-bookworm`), not a pre-release, and
//! a candidate must keep the running tag's variant and its count of numeric parts; tags that
//! look like git SHAs are not versions; only versions above the running one are proposed.
//! Calendar versions (`2024.05.01`, `24.04`) order as their numbers do.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A tag read as a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVersion {
    /// `1.27.3` is `[1, 27, 3]`.
    pub numbers: Vec<u64>,
    /// What follows the first `-` (`alpine` in `1.27-alpine`); empty when nothing does.
    pub variant: String,
}

impl TagVersion {
    /// The version a tag names, if it names one.
    pub fn parse(tag: &str) -> Option<Self> {
        if looks_like_git_sha(tag) {
            return None;
        }
        let bare = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let (numeric, variant) = bare.split_once('-').unwrap_or((bare, ""));
        let numbers: Option<Vec<u64>> = numeric
            .split('.')
            .map(|p| {
                (!p.is_empty() && p.len() <= 18 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        let numbers = numbers?;
        (!numbers.is_empty() && numbers.len() <= 4).then(|| Self {
            numbers,
            variant: variant.to_owned(),
        })
    }

    /// Whether `other` may replace this one at all: the same variant and count of parts.
    pub fn same_line(&self, other: &Self) -> bool {
        self.variant == other.variant && self.numbers.len() == other.numbers.len()
    }

    /// The first three numbers as a semantic version (missing ones are 0).
    fn semver(&self) -> semver::Version {
        let n = |i: usize| self.numbers.get(i).copied().unwrap_or(0);
        semver::Version::new(n(0), n(1), n(2))
    }
}

impl Ord for TagVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers.cmp(&other.numbers)
    }
}

impl PartialOrd for TagVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// 7 to 40 hex digits with at least one letter: a commit, not a version (`20240115` is a date).
pub fn looks_like_git_sha(tag: &str) -> bool {
    let t = tag.strip_prefix("sha-").unwrap_or(tag);
    (7..=40).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && t.bytes().any(|b| b.is_ascii_alphabetic())
}

/// How a service takes updates (`io.capstan.update` or config).
#[derive(Debug, Clone)]
pub enum Policy {
    /// The same tag, new content (the default).
    Digest,
    /// Newer patch versions: the same major and minor.
    Patch,
    /// Newer minor (and patch) versions: the same major.
    Minor,
    /// Any newer version.
    Major,
    /// Newer versions within a range (`semver:>=1.2, <2`, `semver:^1.4`, `semver:~1.4.2`).
    Semver(semver::VersionReq),
    /// Newer versions among the tags matching a pattern (`regex:^1\.2[0-9]\.`).
    Regex(regex::Regex),
    /// Not watched.
    None,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digest => f.write_str("digest"),
            Self::Patch => f.write_str("patch"),
            Self::Minor => f.write_str("minor"),
            Self::Major => f.write_str("major"),
            Self::Semver(r) => write!(f, "semver:{r}"),
            Self::Regex(r) => write!(f, "regex:{}", r.as_str()),
            Self::None => f.write_str("none"),
        }
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Ok(match s {
            "" | "digest" => Self::Digest,
            "patch" => Self::Patch,
            "minor" => Self::Minor,
            "major" => Self::Major,
            "none" => Self::None,
            _ => {
                if let Some(range) = s.strip_prefix("semver:") {
                    Self::Semver(semver::VersionReq::parse(range).map_err(|e| {
                        format!("{s:?}: the range does not parse ({e}); write it like semver:>=1.2, <2 or semver:^1.4")
                    })?)
                } else if let Some(pattern) = s.strip_prefix("regex:") {
                    Self::Regex(
                        regex::Regex::new(pattern)
                            .map_err(|e| format!("{s:?}: the pattern does not parse: {e}"))?,
                    )
                } else {
                    return Err(format!(
                        "{s:?} is not an update policy: use digest, patch, minor, major, semver:<range>, regex:<pattern> or none"
                    ));
                }
            }
        })
    }
}

/// What a policy makes of the tags of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The tag to move to, when there is one.
    pub candidate: Option<String>,
    /// Why it was chosen, or why none was.
    pub reason: String,
}

impl Policy {
    /// Whether the policy compares tags (and so needs the repository's tag list).
    pub fn compares_tags(&self) -> bool {
        !matches!(self, Self::Digest | Self::None)
    }

    /// The newest tag of `tags` the policy allows in place of `current`.
    pub fn choose(&self, current: &str, tags: &[String]) -> Choice {
        let none = |reason: String| Choice {
            candidate: None,
            reason,
        };
        if !self.compares_tags() {
            return none(match self {
                Self::None => "policy none: not watched".into(),
                _ => format!("policy digest: only new content under {current} counts"),
            });
        }
        let Some(running) = TagVersion::parse(current) else {
            return none(format!(
                "{current} is not a version, so no tag is newer than it; only its digest is watched"
            ));
        };
        let mut newer_elsewhere: Option<(TagVersion, &String)> = None;
        let mut best: Option<(TagVersion, &String)> = None;
        for tag in tags {
            let Some(v) = TagVersion::parse(tag) else {
                continue;
            };
            if !running.same_line(&v) || v <= running {
                continue;
            }
            let allowed = match self {
                Self::Patch => v.numbers.get(..2) == running.numbers.get(..2),
                Self::Minor => v.numbers.first() == running.numbers.first(),
                Self::Major => true,
                Self::Semver(req) => req.matches(&v.semver()),
                Self::Regex(re) => re.is_match(tag),
                Self::Digest | Self::None => false,
            };
            let slot = if allowed {
                &mut best
            } else {
                &mut newer_elsewhere
            };
            if slot.as_ref().is_none_or(|(b, _)| v > *b) {
                *slot = Some((v, tag));
            }
        }
        let line = if running.variant.is_empty() {
            format!("{} numeric parts, no variant", running.numbers.len())
        } else {
            format!(
                "{} numeric parts, variant -{}",
                running.numbers.len(),
                running.variant
            )
        };
        match (best, newer_elsewhere) {
            (Some((_, tag)), _) => Choice {
                candidate: Some(tag.clone()),
                reason: format!(
                    "{tag} is the newest tag above {current} that policy {self} allows ({line})"
                ),
            },
            (None, Some((_, tag))) => none(format!(
                "{tag} is newer than {current} but policy {self} does not allow it"
            )),
            (None, None) => none(format!("no tag is newer than {current} ({line})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn tags_read_as_versions_or_not() {
        let v = |t: &str| TagVersion::parse(t).map(|v| (v.numbers, v.variant));
        assert_eq!(v("v1.2.3"), Some((vec![1, 2, 3], String::new())));
        assert_eq!(v("1.27-alpine"), Some((vec![1, 27], "alpine".into())));
        assert_eq!(
            v("3.12.1-slim-bookworm"),
            Some((vec![3, 12, 1], "slim-bookworm".into()))
        );
        assert_eq!(v("2024.05.01"), Some((vec![2024, 5, 1], String::new())));
        assert_eq!(v("20240115"), Some((vec![20_240_115], String::new())));
        for not in [
            "latest",
            "stable",
            "1.2.x",
            "a1b2c3d",
            "sha-4f9c2e1",
            "1..2",
            "",
            "v",
            "1.2.3.4.5",
        ] {
            assert_eq!(v(not), None, "{not}");
        }
        assert!(looks_like_git_sha("4f9c2e1"));
        assert!(!looks_like_git_sha("1234567"));
        assert!(TagVersion::parse("1.10.0") > TagVersion::parse("1.9.9"));
    }

    #[test]
    fn each_policy_picks_the_right_candidate() {
        let all = tags(&[
            "v1.0.0",
            "v1.0.1",
            "v1.0.2",
            "v1.1.0",
            "v2.0.0",
            "1.0.1-alpine",
            "1.0.3-alpine",
            "1.1",
            "latest",
            "4f9c2e1",
            "v1.0.10",
        ]);
        let pick = |policy: &str, current: &str| {
            policy
                .parse::<Policy>()
                .unwrap()
                .choose(current, &all)
                .candidate
        };
        assert_eq!(pick("patch", "v1.0.1").as_deref(), Some("v1.0.10"));
        assert_eq!(pick("minor", "v1.0.1").as_deref(), Some("v1.1.0"));
        assert_eq!(pick("major", "v1.0.1").as_deref(), Some("v2.0.0"));
        // a variant keeps to its own line
        assert_eq!(
            pick("major", "1.0.1-alpine").as_deref(),
            Some("1.0.3-alpine")
        );
        // two parts stay two parts
        assert_eq!(pick("major", "1.0").as_deref(), Some("1.1"));
        assert_eq!(
            pick("semver:>=1.0.2, <1.1", "v1.0.1").as_deref(),
            Some("v1.0.10")
        );
        assert_eq!(pick("semver:^1", "v1.0.1").as_deref(), Some("v1.1.0"));
        assert_eq!(
            pick(r"regex:^v1\.0\.[0-2]$", "v1.0.0").as_deref(),
            Some("v1.0.2")
        );
        // nothing newer, not a version, not comparing tags
        assert_eq!(pick("major", "v2.0.0"), None);
        assert_eq!(pick("major", "latest"), None);
        assert_eq!(pick("digest", "v1.0.1"), None);
        assert_eq!(pick("none", "v1.0.1"), None);
        // and each says why
        let why = |policy: &str, current: &str| {
            policy
                .parse::<Policy>()
                .unwrap()
                .choose(current, &all)
                .reason
        };
        assert!(
            why("minor", "v1.1.0")
                .contains("v2.0.0 is newer than v1.1.0 but policy minor does not allow it")
        );
        assert!(why("major", "latest").contains("not a version"));
        assert!(why("patch", "v1.0.1").contains("v1.0.10 is the newest tag above v1.0.1"));
    }

    #[test]
    fn bad_policies_say_what_is_accepted() {
        for (text, says) in [
            ("weekly", "use digest, patch, minor"),
            ("semver:>>1", "the range does not parse"),
            ("regex:(", "the pattern does not parse"),
        ] {
            let e = text.parse::<Policy>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
