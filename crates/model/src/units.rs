//! The one grammar of durations and sizes, for capstan's config, flags and Compose files alike.
//!
//! - A duration is one or more `<number><unit>` written together, units `ns`, `us`/`µs`,
//!   `ms`, `s`, `m`, `h`, `d` (24 h), `w` (7 d), a fraction allowed on the last one: `10s`,
//!   `1h30m`, `1.5s`, `500ms`, `7d`; and `0`. Parsed by jiff's "friendly" duration format (a
//!   maintained parser; it also takes the long unit names, `5mins`), held here to what the
//!   design promises: no spaces, no sign, no ISO 8601 form, and no months or years, whose
//!   length depends on the date.
//! - A size is a number and an optional unit, case-insensitive: `b`, `k`, `m`, `g`, `t` with an
//!   optional `b` or `ib` (`64m`, `1gb`, `512KiB`, `10GiB`), all binary multiples, as Docker
//!   reads `mem_limit: 1g` and `--memory 1gb`. Written by hand: the size crates read `1gb` as
//!   10^9 bytes (SI), which would give a container a different limit than Docker gives it.

use std::time::Duration;

/// A value that is not a duration or size of this grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// The value as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.input, self.reason)
    }
}

impl std::error::Error for UnitError {}

fn unit_error(input: &str, reason: impl Into<String>) -> UnitError {
    UnitError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

const DURATION_FORMS: &str = "is not a duration like 10s, 1m30s, 500ms, 1h or 7d";

/// A duration of the grammar above.
///
/// # Errors
/// [`UnitError`] saying which forms are accepted.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if !s.starts_with(|c: char| c.is_ascii_digit()) || s.contains(char::is_whitespace) {
        return Err(unit_error(input, DURATION_FORMS));
    }
    let span: jiff::Span = s.parse().map_err(|_| unit_error(input, DURATION_FORMS))?;
    let nanos = span
        .total((
            jiff::Unit::Nanosecond,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|_| {
            unit_error(
                input,
                "is not a fixed length: use days (d) or weeks (w), not months or years",
            )
        })?;
    if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
        return Err(unit_error(input, "is out of range"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// [`parse_duration`] in nanoseconds, as the engine and the stores keep durations.
///
/// # Errors
/// [`UnitError`] saying which forms are accepted.
pub fn parse_duration_nanos(input: &str) -> Result<i64, UnitError> {
    let d = parse_duration(input)?;
    i64::try_from(d.as_nanos()).map_err(|_| unit_error(input, "is out of range"))
}

/// A size of the grammar above, in bytes.
///
/// # Errors
/// [`UnitError`] naming the units.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let t = input.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| unit_error(input, "is not a size like 64m, 1g or 10GiB"))?;
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(unit_error(input, "has an unknown unit (b, k, m, g, t)")),
    };
    let bytes = (n * (1_u64 << shift) as f64).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(unit_error(input, "is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_duration_grammar_for_config_flags_and_compose() {
        let s = |v: &str| parse_duration(v).unwrap();
        assert_eq!(s("10s"), Duration::from_secs(10));
        assert_eq!(
            s("1h30m"),
            Duration::from_mins(90),
            "compound, as Compose writes"
        );
        assert_eq!(
            s("7d"),
            Duration::from_hours(7 * 24),
            "days, as config writes"
        );
        assert_eq!(s("2w"), Duration::from_hours(14 * 24));
        assert_eq!(s("1.5s"), Duration::from_millis(1500));
        assert_eq!(s("1m30s"), Duration::from_secs(90));
        assert_eq!(s("500ms"), Duration::from_millis(500));
        assert_eq!(s("2us"), Duration::from_micros(2));
        assert_eq!(s("2µs"), Duration::from_micros(2));
        assert_eq!(s("0"), Duration::ZERO);
        assert_eq!(s("1d2h"), Duration::from_hours(26));
        for bad in [
            "", "10", "s", "5 s", "1h 30m", "-5s", "PT1H", "1y", "1mo", "forever", "1.5h30m",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(
                err.to_string().contains("duration") || err.to_string().contains("fixed"),
                "{bad}: {err}"
            );
        }
        assert_eq!(parse_duration_nanos("1s").unwrap(), 1_000_000_000);
    }

    #[test]
    fn sizes_are_binary_as_docker_reads_them() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        for bad in ["lots", "5x", "", "-1m"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}

/// A value of capstan.toml that cannot work; `key` is its full name (`logs.memory`,
/// `images.refs[0]`). Each crate that owns a section says which of its values are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, from the section's name.
    pub key: String,
    /// What is wrong, and what would do.
    pub message: String,
}

impl ConfigError {
    /// The error for `key`.
    pub fn new(key: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// The same error one level down: `url` under `notify[0]` reads `notify[0].url`.
    #[must_use]
    pub fn under(self, section: &str) -> Self {
        Self {
            key: format!("{section}.{}", self.key),
            message: self.message,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A duration of this grammar as a config value (`interval = "10s"`): parsed once, when the
/// file is read, so a bad one is refused with its key's name before anything starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        parse_duration(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, se: S) -> Result<S::Ok, S::Error> {
        se.serialize_str(&crate::format_duration(self.0))
    }
}

/// A size of this grammar as a config value (`max_size = "10GiB"`), parsed when the file is
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigSize(pub u64);

impl<'de> serde::Deserialize<'de> for ConfigSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        parse_size(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for ConfigSize {
    fn serialize<S: serde::Serializer>(&self, se: S) -> Result<S::Ok, S::Error> {
        se.serialize_str(&format!("{}B", self.0))
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn config_values_are_parsed_when_read() {
        #[derive(serde::Deserialize)]
        struct Section {
            every: ConfigDuration,
            max: ConfigSize,
        }
        let s: Section = serde_json::from_str(r#"{"every": "1h30m", "max": "2GiB"}"#).unwrap();
        assert_eq!(s.every.0, Duration::from_mins(90));
        assert_eq!(s.max.0, 2 << 30);
        let err = serde_json::from_str::<Section>(r#"{"every": "soon", "max": "1g"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
        assert_eq!(
            serde_json::to_string(&ConfigDuration(Duration::from_hours(168))).unwrap(),
            "\"7d\""
        );
    }
}
