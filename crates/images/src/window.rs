//! Maintenance windows for automatic updates (label `io.capstan.update.window`): a cron
//! schedule of when a window opens and how long it stays open, `MIN HOUR DAY MONTH WEEKDAY
//! DURATION` in the host's local time, e.g. `0 2 * * 6 3h` (Saturdays 02:00–05:00) or
//! `*/30 * * * 1-5 10m`. Fields take `*`, numbers, lists (`1,15`), ranges (`1-5`) and steps
//! (`*/15`, `0-30/10`); weekday 0 or 7 is Sunday. A day is restricted by both its day of month
//! and its weekday when both are given.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike};

/// The longest window: a day (an always-open window is no label at all).
const MAX_OPEN: Duration = Duration::days(1);

/// A parsed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    open_for: Duration,
}

impl Window {
    /// Parses `MIN HOUR DAY MONTH WEEKDAY DURATION`; the error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [min, hour, day, month, weekday, duration] = fields[..] else {
            return Err(format!(
                "{text:?}: write MIN HOUR DAY MONTH WEEKDAY DURATION, like \"0 2 * * 6 3h\""
            ));
        };
        let ns = capstan_model::parse_duration_nanos(duration)
            .map_err(|e| format!("{text:?}: the duration: {e}"))?;
        let open_for = Duration::nanoseconds(ns);
        if open_for <= Duration::zero() || open_for > MAX_OPEN {
            return Err(format!(
                "{text:?}: the duration is more than 0 and at most 1d"
            ));
        }
        let mut weekdays = field(weekday, 0, 7, "weekday", text)? as u8;
        if weekdays & 0x80 != 0 {
            weekdays = (weekdays & 0x7f) | 1; // 7 is Sunday too
        }
        Ok(Self {
            text: text.to_owned(),
            minutes: field(min, 0, 59, "minute", text)?,
            hours: field(hour, 0, 23, "hour", text)? as u32,
            days: field(day, 1, 31, "day", text)? as u32,
            months: field(month, 1, 12, "month", text)? as u16,
            weekdays,
            open_for,
        })
    }

    /// Whether the window is open at `now`: it opened at a matching minute less than its
    /// duration ago.
    pub fn is_open<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> bool {
        let now = now.with_second(0).and_then(|t| t.with_nanosecond(0));
        let Some(now) = now else { return false };
        let steps = self.open_for.num_minutes().max(1);
        (0..steps).any(|back| self.matches(&(now.clone() - Duration::minutes(back))))
    }

    fn matches<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> bool {
        self.minutes & (1 << t.minute()) != 0
            && self.hours & (1 << t.hour()) != 0
            && self.days & (1 << t.day()) != 0
            && self.months & (1 << t.month()) != 0
            && self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One cron field as a bit set of the values it allows.
fn field(text: &str, lo: u32, hi: u32, name: &str, whole: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("{whole:?}: the {name} field {text:?} {why}");
    let mut bits = 0_u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("has a step that is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse().map_err(|_| bad("is not a number or range"))?;
            let b = b.parse().map_err(|_| bad("is not a number or range"))?;
            (a, b)
        } else {
            let v = range
                .parse()
                .map_err(|_| bad("is not a number, range, list or *"))?;
            (v, if step > 1 { hi } else { v })
        };
        if from < lo || to > hi || from > to {
            return Err(bad(&format!("is outside {lo}-{hi}")));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_open_on_schedule_for_their_duration() {
        // Saturdays 02:00 for 3 h (2026-12-05 is a Saturday)
        let w = Window::parse("0 2 * * 6 3h").unwrap();
        assert!(!w.is_open(&at("2026-12-05T01:59:00Z")));
        assert!(w.is_open(&at("2026-12-05T02:00:00Z")));
        assert!(w.is_open(&at("2026-12-05T04:59:59Z")));
        assert!(!w.is_open(&at("2026-12-05T05:00:00Z")));
        assert!(!w.is_open(&at("2026-12-06T02:30:00Z")), "a Sunday");
        // a window that opened before midnight stays open after it
        let w = Window::parse("30 23 * * * 1h").unwrap();
        assert!(w.is_open(&at("2026-12-06T00:15:00Z")));
        // every 30 minutes on weekdays, 10 minutes each
        let w = Window::parse("*/30 * * * 1-5 10m").unwrap();
        assert!(w.is_open(&at("2026-12-03T10:35:00Z")));
        assert!(!w.is_open(&at("2026-12-03T10:45:00Z")));
        assert!(!w.is_open(&at("2026-12-05T10:35:00Z")));
        // 7 is Sunday
        let w = Window::parse("0 0 * * 7 1d").unwrap();
        assert!(w.is_open(&at("2026-12-06T12:00:00Z")));
        // lists and day of month
        let w = Window::parse("0 3,15 1 * * 1h").unwrap();
        assert!(w.is_open(&at("2027-01-01T15:30:00Z")));
        assert!(!w.is_open(&at("2027-01-02T15:30:00Z")));
    }

    #[test]
    fn bad_windows_name_the_field() {
        for (bad, says) in [
            ("0 2 * * 6", "MIN HOUR DAY MONTH WEEKDAY DURATION"),
            ("60 2 * * 6 1h", "minute field"),
            ("0 24 * * * 1h", "hour field"),
            ("0 2 0 * * 1h", "day field"),
            ("0 2 * 13 * 1h", "month field"),
            ("0 2 * * 8 1h", "weekday field"),
            ("*/0 2 * * * 1h", "step"),
            ("0 2 * * * 2d", "at most 1d"),
            ("0 2 * * * soon", "duration"),
            ("5-1 2 * * * 1h", "minute field"),
        ] {
            let err = Window::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
