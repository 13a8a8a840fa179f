//! The embedded store on disk: queries return exactly the expected lines, commits carry the
//! read positions, reopening keeps both, retention drops whole partitions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use capstan_logs::{Entry, Position, Store};
use capstan_model::{LogLine, Origin};

const HOUR: i64 = 3_600_000_000_000;

fn line(n: i64, service: &str, level: &str, raw: &str, fields: serde_json::Value) -> LogLine {
    LogLine {
        id: format!("c:1:{n}"),
        time_nano: n * 1_000_000_000,
        raw: raw.into(),
        level: Some(level.into()),
        fields: serde_json::from_value(fields).unwrap(),
        origin: Origin {
            stream: if level == "error" { "stderr" } else { "stdout" }.into(),
            service: service.into(),
            container: format!("{service}-1"),
            ..Origin::default()
        },
        ..LogLine::default()
    }
}

fn sample() -> Vec<Entry> {
    let lines = vec![
        line(
            1,
            "api",
            "info",
            "GET /users 200 in 3ms",
            serde_json::json!({"status": 200, "user": "alice"}),
        ),
        line(
            2,
            "api",
            "error",
            "connection refused by db:5432",
            serde_json::json!({"status": 500}),
        ),
        line(
            3,
            "web",
            "info",
            "rendered page home",
            serde_json::json!({}),
        ),
        line(
            4,
            "web",
            "warn",
            "slow request: connection took 900ms",
            serde_json::json!({"user": "bob"}),
        ),
        line(
            5,
            "api",
            "error",
            "timeout talking to payments",
            serde_json::json!({"status": 504}),
        ),
    ];
    lines.into_iter().map(Entry::from).collect()
}

fn texts(store: &Store, q: &str) -> Vec<String> {
    let query = store.compile(q).unwrap();
    let (lines, total) = store.search(&query, None, None, 100).unwrap();
    assert_eq!(total as usize, lines.len(), "{q}");
    lines.into_iter().map(|l| l.raw).collect()
}

#[test]
fn queries_return_exactly_the_expected_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.append(sample(), BTreeMap::new(), 10 * HOUR).unwrap(),
        5
    );

    assert_eq!(
        texts(&store, "connection"),
        [
            "slow request: connection took 900ms",
            "connection refused by db:5432"
        ]
    );
    assert_eq!(
        texts(&store, "\"connection refused\""),
        ["connection refused by db:5432"]
    );
    assert_eq!(
        texts(&store, "\"refused connection\""),
        Vec::<String>::new()
    );
    assert_eq!(
        texts(&store, "service:api level:error"),
        [
            "timeout talking to payments",
            "connection refused by db:5432"
        ]
    );
    assert_eq!(
        texts(&store, "level:ERROR -timeout"),
        ["connection refused by db:5432"]
    );
    assert_eq!(texts(&store, "service:web OR timeout").len(), 3);
    assert_eq!(texts(&store, "(service:web OR timeout) NOT slow").len(), 2);
    assert_eq!(
        texts(&store, "NOT service:api"),
        ["slow request: connection took 900ms", "rendered page home"]
    );
    assert_eq!(
        texts(&store, "status:500"),
        ["connection refused by db:5432"]
    );
    assert_eq!(texts(&store, "user:alice"), ["GET /users 200 in 3ms"]);
    assert_eq!(texts(&store, "stream:stderr").len(), 2);
    assert_eq!(texts(&store, "time*"), ["timeout talking to payments"]);
    assert_eq!(texts(&store, "").len(), 5);
    assert!(store.compile("level:error AND").is_err());

    // time range (inclusive), newest first, limit
    let all = store.compile("").unwrap();
    let (lines, total) = store
        .search(&all, Some(2_000_000_000), Some(4_000_000_000), 2)
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 3]);
    // after a sequence number, oldest first
    let after = store.after(3, &all, 10).unwrap();
    assert_eq!(after.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 5]);
    // per-second buckets
    let errors = store.compile("level:error").unwrap();
    let h = store
        .histogram(&errors, 1_000_000_000, 5_000_000_000, 1_000_000_000)
        .unwrap();
    assert_eq!(h, [0, 1, 0, 0, 1]);
}

#[test]
fn commits_keep_positions_and_retention_drops_partitions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let pos = |offset| {
            BTreeMap::from([(
                "c".to_owned(),
                Position {
                    inode: 7,
                    offset,
                    ..Position::default()
                },
            )])
        };
        store
            .append(sample()[..2].to_vec(), pos(100), 10 * HOUR)
            .unwrap();
        store
            .append(sample()[2..].to_vec(), pos(250), 12 * HOUR)
            .unwrap();
        assert_eq!(store.partitions().len(), 2);
    }
    let store = Store::open(dir.path()).unwrap();
    let cp = store.checkpoint();
    assert_eq!((cp.seq, cp.positions["c"].offset), (5, 250));
    // the next line continues the sequence
    let more = store
        .append(vec![sample()[0].clone()], cp.positions.clone(), 12 * HOUR)
        .unwrap();
    assert_eq!(more, 6);
    // lines of the first partition are older than 2.5 s: it goes, whole
    let dropped = store.retain(Some(2_500_000_000), None).unwrap();
    assert_eq!(dropped, ["p10"]);
    assert_eq!(texts(&store, "").len(), 4);
    // by size: everything but the partition being written
    let dropped = store.retain(None, Some(1)).unwrap();
    assert!(dropped.is_empty(), "the partition being written stays");
}

#[test]
fn a_line_comes_back_whole_and_origin_fields_match_containers_that_came_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let full = LogLine {
        id: "abc:7:100".into(),
        time_nano: 1_700_000_000_123_456_789,
        time: capstan_model::nanos_to_datetime(1_700_000_000_123_456_789),
        raw: r#"{"level":"error","msg":"boom","code":7}"#.into(),
        message: "boom".into(),
        level: Some("error".into()),
        fields: serde_json::from_value(serde_json::json!({"level":"error","msg":"boom","code":7}))
            .unwrap(),
        origin: Origin {
            stream: "stderr".into(),
            host: "h1".into(),
            container_id: "f".repeat(64),
            container: "shop-api-2".into(),
            image: "shop/api:1.2".into(),
            image_id: format!("sha256:{}", "e".repeat(64)),
            app: "shop".into(),
            service: "api".into(),
            replica: Some(2),
            project: "shop".into(),
            labels: BTreeMap::from([("team".into(), "payments".into())]),
            ..Origin::default()
        },
        ..LogLine::default()
    };
    // a query compiled before the container's first line still finds it (sinks and live
    // tails keep their query for their whole life)
    let by_service = store
        .compile("service:api replica:2 label.team:payments")
        .unwrap();
    let prefix = store.compile("container:shop-a* stream:stderr").unwrap();
    store
        .append(vec![full.clone().into()], BTreeMap::new(), 10 * HOUR)
        .unwrap();
    for q in [&by_service, &prefix] {
        let (lines, total) = store.search(q, None, None, 10).unwrap();
        assert_eq!(total, 1);
        assert_eq!(
            lines[0],
            LogLine {
                seq: 1,
                ..full.clone()
            }
        );
    }
    assert_eq!(texts(&store, "service:ap"), Vec::<String>::new());
    assert_eq!(texts(&store, "label.team:core"), Vec::<String>::new());
    assert_eq!(texts(&store, "code:7").len(), 1);
    // and after a restart, from the origins kept on disk
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let (lines, _) = store.search(&by_service, None, None, 10).unwrap();
    assert_eq!(
        lines,
        [LogLine {
            seq: 1,
            ..full.clone()
        }]
    );
    // a JSON line's fields, kept once as its text, come back the same
    let json = LogLine {
        id: "abc:7:200".into(),
        ..full.clone()
    };
    let entry = Entry {
        fields_are_raw: true,
        ..json.clone().into()
    };
    store
        .append(vec![entry], BTreeMap::new(), 10 * HOUR)
        .unwrap();
    let (lines, total) = store
        .search(&store.compile("code:7").unwrap(), None, None, 10)
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(lines[0], LogLine { seq: 2, ..json });
}

/// Retention forgets the origins no line left names (a host whose containers come and go
/// would keep them all otherwise), but never one that a line added and not yet committed names.
#[test]
fn retention_forgets_origins_no_line_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let of = |n: i64, container: &str| -> Entry {
        LogLine {
            id: format!("{container}:1:{n}"),
            time_nano: n * HOUR,
            raw: format!("line {n} of {container}"),
            origin: Origin {
                container: container.into(),
                image: "shop/api:1".into(),
                stream: "stdout".into(),
                ..Origin::default()
            },
            ..LogLine::default()
        }
        .into()
    };
    let none = BTreeMap::new;
    store
        .append(vec![of(10, "gone"), of(10, "parked")], none(), 10 * HOUR)
        .unwrap();
    store
        .append(vec![of(12, "stays")], none(), 12 * HOUR)
        .unwrap();
    // a line of `parked` is added, not committed, when its partition goes
    store
        .add(vec![of(12, "parked")], none(), 12 * HOUR)
        .unwrap();
    assert_eq!(store.origin_count(), 3);
    assert_eq!(store.retain(Some(11 * HOUR), None).unwrap(), ["p10"]);
    assert_eq!(store.origin_count(), 2);
    store.commit().unwrap();
    let origins = std::fs::read_to_string(dir.path().join("origins.jsonl")).unwrap();
    assert_eq!(origins.lines().count(), 2, "{origins}");
    assert!(!origins.contains("\"gone\""), "{origins}");
    let check = |store: &Store| {
        for (container, lines) in [("gone", 0), ("parked", 1), ("stays", 1)] {
            let q = store.compile(&format!("container:{container}")).unwrap();
            let (found, total) = store.search(&q, None, None, 10).unwrap();
            assert_eq!(total, lines, "{container}");
            for line in found {
                assert_eq!(line.origin.container, container);
                assert_eq!(line.origin.image, "shop/api:1");
            }
        }
    };
    check(&store);
    // after a restart too; and `gone` coming back gets an origin again
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store);
    store
        .append(vec![of(13, "gone")], none(), 13 * HOUR)
        .unwrap();
    let q = store.compile("container:gone").unwrap();
    let (found, total) = store.search(&q, None, None, 10).unwrap();
    assert_eq!(total, 1);
    assert_eq!(found[0].origin.image, "shop/api:1");
}

#[test]
fn a_store_of_the_older_layout_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("p490000")).unwrap();
    std::fs::write(dir.path().join("p490000/meta.json"), "{}").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.partitions().is_empty());
    assert!(dir.path().join("format-1/p490000/meta.json").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        "2\n"
    );
    // a layout from the future is refused, not moved
    drop(store);
    std::fs::write(dir.path().join("FORMAT"), "3\n").unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("layout 3"), "{err}");
}

#[test]
fn the_newest_lines_come_first_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // one commit each: three segments
    for _ in 0..3 {
        store.append(sample(), BTreeMap::new(), 10 * HOUR).unwrap();
    }
    let q = store.compile("service:api").unwrap();
    let (lines, total) = store.search(&q, None, None, 4).unwrap();
    assert_eq!(total, 9);
    assert_eq!(
        lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [15, 12, 11, 10]
    );
    let (lines, _) = store.search(&q, None, None, 100).unwrap();
    assert_eq!(
        lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [15, 12, 11, 10, 7, 6, 5, 2, 1]
    );
}

/// A fleet host's lines are committed with its cursor, beside the collector's own lines and
/// positions (neither takes the other's away): a batch sent again is not stored twice, the
/// cursor survives a reopening, and lines the collector added and had not committed yet are
/// committed with them.
#[test]
fn a_hosts_lines_are_committed_once_with_its_cursor_beside_the_collectors_positions() {
    let dir = tempfile::tempdir().unwrap();
    let pos = |offset| {
        BTreeMap::from([(
            "c".to_owned(),
            Position {
                inode: 7,
                offset,
                ..Position::default()
            },
        )])
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .add(sample()[..1].to_vec(), pos(10), 10 * HOUR)
            .unwrap();
        let (cursors, seq) = store
            .append_remote(
                vec![
                    ("sha256:h1".to_owned(), 40, sample()[1..2].to_vec()),
                    ("sha256:h2".to_owned(), 7, sample()[2..3].to_vec()),
                ],
                10 * HOUR,
            )
            .unwrap();
        assert_eq!(
            (cursors, seq),
            (vec![40, 7], Some(3)),
            "the collector's line went first; both hosts' in one commit"
        );
        let cp = store.checkpoint();
        assert_eq!(
            (cp.seq, cp.positions["c"].offset, cp.remote["sha256:h1"]),
            (3, 10, 40)
        );
        // the same batch again (its answer was lost): nothing stored
        let again = store
            .append_remote(
                vec![("sha256:h1".to_owned(), 40, sample()[1..2].to_vec())],
                10 * HOUR,
            )
            .unwrap();
        assert_eq!(again, (vec![40], None));
        // the collector's next commit keeps the host's cursor
        store
            .append(sample()[3..].to_vec(), pos(20), 10 * HOUR)
            .unwrap();
        assert_eq!(store.rollbacks(), 0);
    }
    let store = Store::open(dir.path()).unwrap();
    let cp = store.checkpoint();
    assert_eq!((cp.seq, cp.positions["c"].offset), (5, 20));
    assert_eq!(store.remote_cursor("sha256:h1"), 40);
    assert_eq!(store.remote_cursor("sha256:h2"), 7);
    assert_eq!(store.remote_cursor("sha256:other"), 0);
    assert_eq!(texts(&store, "").len(), 5, "every line once");
}
