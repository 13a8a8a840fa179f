use chrono::{DateTime, Duration, SecondsFormat, Utc};

/// Converts nanoseconds since the epoch to a UTC time.
pub fn nanos_to_datetime(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// RFC 3339 UTC with nanoseconds, as on the wire.
pub fn format_nanos(nanos: i64) -> String {
    nanos_to_datetime(nanos).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// An HTTP `Retry-After` value: seconds, or an HTTP date (then the time left until it from
/// `now`, zero when past). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// Parses a point in time given either as RFC 3339 or as a duration ago (`10s`, `5m`, `1h`,
/// `7d`, `1h30m`: the grammar of [`crate::parse_duration`]), relative to `now`. Returns
/// nanoseconds since the epoch.
///
/// # Errors
/// Returns a message naming the accepted forms when `input` is neither.
pub fn parse_time_or_ago(input: &str, now: DateTime<Utc>) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return t
            .with_timezone(&Utc)
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("time {input:?} is out of range"));
    }
    let ago = crate::parse_duration(input)
        .ok()
        .and_then(|d| Duration::from_std(d).ok())
        .ok_or_else(|| {
            format!(
                "{input:?} is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration (10s, 5m, 1h, 7d)"
            )
        })?;
    // `since=9999999d` reaches before any time a clock can say: refused, not a panic
    now.checked_sub_signed(ago)
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| format!("{input:?} reaches out of range"))
}

/// A duration as config writes it: the largest whole unit (`90s`, `5m`, `2h`, `7d`).
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if d.is_zero() {
        return "0s".to_owned();
    }
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_too_far_back_is_refused_not_a_panic() {
        let now = Utc::now();
        for input in ["9999999999999d", "1000000000d", "300000000w"] {
            let e = parse_time_or_ago(input, now).unwrap_err();
            assert!(e.contains(input), "{e}");
        }
    }

    #[test]
    fn parses_rfc3339_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = parse_time_or_ago("2026-01-01T23:00:00.5Z", now).unwrap();
        assert_eq!(format_nanos(t), "2026-01-01T23:00:00.500000000Z");
        let t = parse_time_or_ago("1h", now).unwrap();
        assert_eq!(format_nanos(t), "2026-01-01T23:00:00.000000000Z");
        assert_eq!(
            parse_time_or_ago("7d", now).unwrap(),
            parse_time_or_ago("2025-12-26T00:00:00Z", now).unwrap()
        );
        // the one grammar of config and Compose: compound durations too
        assert_eq!(
            parse_time_or_ago("1h30m", now).unwrap(),
            parse_time_or_ago("2026-01-01T22:30:00Z", now).unwrap()
        );
    }

    #[test]
    fn rejects_malformed_times() {
        let now = Utc::now();
        for bad in [
            "",
            "yesterday",
            "10",
            "5 m",
            "1h 30m",
            "2026-13-01T00:00:00Z",
            "-5m",
        ] {
            let err = parse_time_or_ago(bad, now).unwrap_err();
            assert!(
                err.contains("RFC 3339") || err.contains("range"),
                "{bad}: {err}"
            );
        }
    }
}
