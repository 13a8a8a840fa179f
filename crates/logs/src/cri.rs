//! The kubelet's CRI log format (what containerd and CRI-O write under `/var/log/pods`): one
//! line per record, `<time> <stream> <tag> <text>`, e.g.
//! `2026-11-22T08:00:00.123456789Z stdout F listening on :80`. The tag is `F` for a record
//! that ends its line and `P` for a partial one (the runtime cuts lines longer than 16 KiB);
//! partial records are joined back per stream by the same [`Joiner`] as `json-file`'s pieces.
//! The time is RFC 3339 with nanoseconds, in UTC (`Z`) or with the node's offset.

use crate::jsonfile::{BadRecord, Joiner, Line};

/// The time of a CRI record (its first field), in ns since the epoch.
pub fn record_time(record: &[u8]) -> Option<i64> {
    let end = record.iter().position(|b| *b == b' ')?;
    let text = std::str::from_utf8(&record[..end]).ok()?;
    crate::jsonfile::time_ns(text)
}

/// Reads one record (one line of the file, without its `\n`) found at `offset`: its time, and
/// the line it completes, if any.
///
/// # Errors
/// A record that is not `<time> <stream> <tag> <text>` (the caller counts and skips it).
pub fn feed(
    joiner: &mut Joiner,
    record: &[u8],
    offset: u64,
) -> Result<(i64, Option<Line>), BadRecord> {
    let text = std::str::from_utf8(record)
        .map_err(|_| BadRecord("a CRI record that is not UTF-8".into()))?;
    let mut fields = text.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(BadRecord(format!(
            "not a CRI record (time stream tag text): {:?}",
            text.chars().take(80).collect::<String>()
        )));
    };
    // the text after the tag's space; a record of an empty line may end at its tag
    let body = fields.next().unwrap_or("");
    let time_ns = crate::jsonfile::time_ns(time)
        .ok_or_else(|| BadRecord(format!("time {time:?} is not RFC 3339")))?;
    if !matches!(stream, "stdout" | "stderr") {
        return Err(BadRecord(format!(
            "stream {stream:?} is neither stdout nor stderr"
        )));
    }
    // the tag may grow more fields (`F:...`); the first says whether the line ends here
    let full = match tag.split(':').next() {
        Some("F") => true,
        Some("P") => false,
        _ => return Err(BadRecord(format!("tag {tag:?} is neither F nor P"))),
    };
    let line = if full {
        joiner.piece(stream, time_ns, &format!("{body}\n"), offset)
    } else {
        joiner.piece(stream, time_ns, body, offset)
    };
    Ok((time_ns, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_records_make_lines_per_stream() {
        let mut j = Joiner::default();
        let (t, line) = feed(&mut j, b"2026-11-22T08:00:00.5Z stdout F hello world", 0).unwrap();
        assert_eq!(t, 1_795_334_400_500_000_000);
        let line = line.unwrap();
        assert_eq!(
            (line.stream.as_str(), line.text.as_str()),
            ("stdout", "hello world")
        );
        // a long line cut in two, stderr between its pieces
        assert!(
            feed(&mut j, b"2026-11-22T08:00:01Z stdout P first half ", 10)
                .unwrap()
                .1
                .is_none()
        );
        let err = feed(&mut j, b"2026-11-22T08:00:01Z stderr F oops", 20)
            .unwrap()
            .1
            .unwrap();
        assert_eq!(err.text, "oops");
        let joined = feed(&mut j, b"2026-11-22T08:00:02Z stdout F second half", 30)
            .unwrap()
            .1
            .unwrap();
        assert_eq!(joined.text, "first half second half");
        assert_eq!(joined.offset, 10, "a line's offset is its first piece's");
        // an empty line, with and without its space; a node's offset
        assert_eq!(
            feed(&mut j, b"2026-11-22T08:00:03Z stdout F", 40)
                .unwrap()
                .1
                .unwrap()
                .text,
            ""
        );
        assert_eq!(
            feed(&mut j, b"2026-11-22T08:00:03Z stdout F ", 50)
                .unwrap()
                .1
                .unwrap()
                .text,
            ""
        );
        let (t2, _) = feed(&mut j, b"2026-11-22T09:00:00.5+01:00 stdout F x", 60).unwrap();
        assert_eq!(t2, t);
        assert_eq!(record_time(b"2026-11-22T08:00:00.5Z stdout F x"), Some(t));
    }

    #[test]
    fn what_is_not_a_cri_record_is_refused_saying_why() {
        let mut j = Joiner::default();
        for (bad, says) in [
            (&b"hello"[..], "not a CRI record"),
            (b"yesterday stdout F x", "not RFC 3339"),
            (b"2026-11-22T08:00:00Z stdin F x", "neither stdout"),
            (b"2026-11-22T08:00:00Z stdout X x", "neither F nor P"),
        ] {
            let e = feed(&mut j, bad, 0).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
