//! What the engine rotated away before it was read: how many lines the files counted by the
//! kernel held ([`lines_in_lost_files`]), or, when not even their number is known, files and
//! lines estimated from engine time and the writer's pace ([`estimate_lost`]). json-file
//! records carry no sequence numbers: these are estimates, said as such.

use super::source::record_time;

/// What was read of a file the engine deleted after capstan had read it to its end (through
/// the descriptor it kept open).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadToEnd {
    /// Records read from it (since it was opened), and their bytes.
    pub records: u64,
    pub bytes: u64,
    /// Its whole size when it was rotated.
    pub size: u64,
}

/// The lines `files` whole files held, rotated away (their number known) between `gone` and
/// `next` (its bytes; `next_whole` when it is a rotated file, not the live one).
///
/// The engine rotates a file once it reaches one size (`max-size`), so every rotated file is
/// that size to within a record: the files lost weighed what `gone` and a whole `next` weigh,
/// and held as many records as records of the neighbours' mean weight fill. Off by a few
/// lines per file at most, where record lengths drift.
pub fn lines_in_lost_files(files: u64, gone: &ReadToEnd, next: &[u8], next_whole: bool) -> u64 {
    let next_records = next
        .split(|b| *b == b'\n')
        .filter(|r| !r.is_empty())
        .count() as u64;
    let next_bytes = next.len() as u64;
    let records = gone.records + next_records;
    let bytes = gone.bytes + next_bytes;
    if records == 0 || bytes == 0 {
        return 0;
    }
    let (sizes, whole) = match (gone.size > 0, next_whole && next_records > 0) {
        (true, true) => (gone.size + next_bytes, 2),
        (true, false) => (gone.size, 1),
        (false, true) => (next_bytes, 1),
        (false, false) => return 0,
    };
    let file_size = sizes as f64 / f64::from(whole);
    let record = bytes as f64 / records as f64;
    (files as f64 * file_size / record).round() as u64
}

/// What is known of a file the engine deleted while it was being read (or while capstan was
/// stopped).
#[derive(Debug, Clone, Copy, Default)]
pub struct Vanished {
    /// Engine time of the last record read from it.
    pub last_ns: i64,
    /// Bytes of it read.
    pub read: u64,
    /// Intervals between the lines read from it, and their span in ns (two lines or more).
    pub pace: Option<(u64, i64)>,
}

/// How many files and lines were rotated away unread after the last record read from `gone`,
/// before the file `next` (its bytes; `next_whole` when it is a rotated file, not the live one).
///
/// json-file records carry no sequence numbers, so this is an estimate. The gap in engine time
/// between the two, at the writer's pace on both sides of it (in `next` and, when known, in
/// `gone`), says roughly how much went. When `next` is a rotated file, it also shows what
/// every rotated file holds (the engine rotates at one size), so the loss is made of the
/// unread rest of `gone` and a whole number of files like `next`: the pace then only has to
/// be right within half a file, and a machine too busy to keep the writer steady still gets
/// a count within a few lines per file. A gap shorter than half of `next`'s own span is no
/// loss (0, 0): the engine simply rotated between the two.
pub fn estimate_lost(gone: &Vanished, next: &[u8], next_whole: bool) -> (u64, u64) {
    let mut times = next
        .split(|b| *b == b'\n')
        .filter(|r| !r.is_empty())
        .filter_map(record_time);
    let Some(first) = times.next() else {
        return (0, 0);
    };
    let (count, newest) = times.fold((1_u64, first), |(n, _), t| (n + 1, t));
    let gap = first - gone.last_ns;
    let span = newest - first;
    if count < 2 || span <= 0 || gap <= 0 {
        return (0, 0);
    }
    // the lines in the gap, less the one interval any two neighbouring lines have
    let (intervals, ns) = match gone.pace {
        Some((n, ns)) if ns > 0 => (count - 1 + n, span + ns),
        _ => (count - 1, span),
    };
    let per_ns = intervals as f64 / ns as f64;
    let paced = (gap as f64 * per_ns - 1.0).max(0.0);
    if paced < count as f64 / 2.0 {
        return (0, 0);
    }
    let per_file = count as f64;
    if next_whole {
        let line_bytes = next.len() as f64 / per_file;
        let rest = ((next.len() as f64 - gone.read as f64) / line_bytes)
            .round()
            .max(0.0);
        let between = ((paced - rest) / per_file).round().max(0.0);
        let files = between as u64 + u64::from(rest > 0.0);
        return (files, (rest + between * per_file) as u64);
    }
    let files = (paced / per_file).round().max(1.0);
    (files as u64, paced.round() as u64)
}

#[cfg(test)]
mod estimate_tests {
    use super::*;

    fn file(from_s: f64, lines: u64, per_s: f64) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..lines {
            let t = 1_796_000_000_000_000_000_i64 + ((from_s + i as f64 / per_s) * 1e9) as i64;
            let time = capstan_model::nanos_to_datetime(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            out.extend_from_slice(
                format!("{{\"log\":\"line {i}\\n\",\"stream\":\"stdout\",\"time\":\"{time}\"}}\n")
                    .as_bytes(),
            );
        }
        out
    }

    const BASE: i64 = 1_796_000_000_000_000_000;

    /// The last line read at 10 s, `read` bytes into its file, at `pace` (intervals, ns).
    fn gone(read: u64, pace: Option<(u64, i64)>) -> Vanished {
        Vanished {
            last_ns: BASE + 10_000_000_000,
            read,
            pace,
        }
    }

    #[test]
    fn the_gap_before_the_live_file_is_counted_at_its_pace() {
        // 1000 lines a second, 2000 a file: the last line read at 10 s, the live file from
        // 16 s: 6 s, 6000 lines, 3 files gone
        let next = file(16.0, 2000, 1000.0);
        let (files, lines) = estimate_lost(&gone(0, None), &next, false);
        assert_eq!(files, 3);
        assert!((5990..=6000).contains(&lines), "{lines}");
        // the writer slowed down after the gap (a busy machine): the pace before it counts
        // too. 1000 a second before, 500 in the next file: the 6 s gap at 750 a second,
        // between what either side alone would say (6000 and 3000)
        let slow = file(16.0, 1000, 500.0);
        let (_, lines) = estimate_lost(&gone(0, Some((1999, 1_999_000_000))), &slow, false);
        assert!((4400..=4600).contains(&lines), "{lines}");
        let (_, alone) = estimate_lost(&gone(0, None), &slow, false);
        assert!((2900..=3000).contains(&alone), "{alone}");
        // the next file starts right after: nothing lost
        let next = file(10.001, 2000, 1000.0);
        assert_eq!(estimate_lost(&gone(0, None), &next, false), (0, 0));
        // nothing to judge by
        assert_eq!(estimate_lost(&gone(0, None), b"", false), (0, 0));
        assert_eq!(
            estimate_lost(&gone(0, None), &file(20.0, 1, 1.0), false),
            (0, 0)
        );
    }

    #[test]
    fn before_a_rotated_file_whole_files_are_counted_however_the_pace_bent() {
        // 2000 lines a file; 30% of the vanished one read, then 2 whole files went: 1400 +
        // 4000 lines in the 5.4 s before the next file, written at 1000 a second. The next
        // file's pace was bent by a busy machine: at 850 or 1150 a second the gap alone says
        // ~4600 or ~6200 lines
        for (per_s, bent) in [(850.0, true), (1000.0, false), (1150.0, true)] {
            let next = file(15.4, 2000, per_s);
            let read = next.len() as u64 * 3 / 10;
            let (files, lines) = estimate_lost(&gone(read, None), &next, true);
            assert_eq!(files, 3, "at {per_s}/s");
            assert!((5390..=5410).contains(&lines), "at {per_s}/s: {lines}");
            // the live file after the same gap gives the bent pace's figure
            let (_, paced) = estimate_lost(&gone(read, None), &next, false);
            let off = paced.abs_diff(5400);
            assert!(!bent || off > 500, "at {per_s}/s: {paced}");
        }
        // all of the vanished file read (through the descriptor capstan still held), then
        // two whole files went
        let next = file(14.0, 2000, 1000.0);
        assert_eq!(
            estimate_lost(&gone(next.len() as u64, None), &next, true),
            (2, 2000 * 2)
        );
        // all of the vanished file read, the next rotated one right after it: nothing lost
        let next = file(10.001, 2000, 1000.0);
        assert_eq!(
            estimate_lost(&gone(next.len() as u64, None), &next, true),
            (0, 0)
        );
    }
}
