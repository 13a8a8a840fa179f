//! The CRI reader against real files written in the kubelet's format and rotation naming
//! (`capstan_testkit::KubeletLog`: `0.log`, `0.log.<time>`, all rotated files but the newest
//! gzipped, five kept): a writer floods while a reader follows, and the reader is dropped and
//! started again from its saved position every few reads, as capstan is after a kill -9 (it
//! resumes from the position committed with the lines). Every line arrives once, in order,
//! long lines joined from their partial records; halfway, the reader stays away while the file
//! it reads rotates three times (and is gzipped), and goes on in the compressed copy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]
// (std::thread::sleep: the writer and the reader are threads of their own, no async runtime)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use capstan_logs::{Format, Position, Tailer};
use capstan_testkit::KubeletLog;

const LINES: usize = 60_000;

#[test]
fn a_flood_with_rotations_and_restarts_is_read_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = KubeletLog::new(dir.path(), ("apps", "web-7d9f", "u1d"), "web", 64 * 1024, 8);
    let path = log.path().to_owned();
    let done = Arc::new(AtomicBool::new(false));
    let rotated = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(2));
    let writer = {
        let (done, start, rotated) = (Arc::clone(&done), Arc::clone(&start), Arc::clone(&rotated));
        std::thread::spawn(move || {
            start.wait();
            for i in 0..LINES {
                if i % 1000 == 7 {
                    // a long line the runtime cut in three
                    let text = format!("cri line {i} {}", "x".repeat(300));
                    let (a, rest) = text.split_at(100);
                    let (b, c) = rest.split_at(100);
                    log.pieces("stdout", &[a, b, c]);
                } else {
                    log.line(
                        if i % 10 == 3 { "stderr" } else { "stdout" },
                        &format!("cri line {i}"),
                    );
                }
                rotated.store(log.rotations(), Ordering::SeqCst);
                if i % 50 == 0 {
                    // a steady writer: the reader is not meant to be outrun here (what is
                    // rotated away unread is lost, and reported: not this test's subject). At
                    // most ~50,000 lines a second, the kept files hold ~200 ms of a reader
                    // starved by a loaded machine (at 200 a millisecond they held 30 ms,
                    // and the suite's load outran it: a file deleted unread)
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            done.store(true, Ordering::SeqCst);
            log.rotations()
        })
    };
    let mut seen: Vec<usize> = Vec::with_capacity(LINES);
    let mut pos = Position::default();
    let mut restarts = 0;
    let mut paused = false;
    start.wait();
    loop {
        if !paused && seen.len() >= LINES / 2 {
            // away while the file being read rotates three times: it is gzipped by then, and
            // reading goes on in its compressed copy
            paused = true;
            let from = rotated.load(Ordering::SeqCst);
            while rotated.load(Ordering::SeqCst) < from + 3 && !done.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let finished = done.load(Ordering::SeqCst);
        let mut tailer = Tailer::new(&path, pos.clone()).with_format(Format::Cri);
        let mut got = 0;
        let mut raced = false;
        for _ in 0..5 {
            let before = tailer.position().clone();
            let batch = match tailer.read(64 * 1024) {
                Ok(b) => b,
                // a rotated file compressed and removed between listing and opening it: the
                // collector reads again next round, as here
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    raced = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(batch.bad, 0);
            assert!(
                batch.lost_files == 0,
                "a rotated file went unread: {} files, {} lines; position before {before:?}; files {:?}; last seen {:?}",
                batch.lost_files,
                batch.lost_lines,
                files(&path),
                seen.last()
            );
            got += batch.lines.len();
            for line in batch.lines {
                let n: usize = line.text["cri line ".len()..]
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap_or_else(|_| panic!("{}", line.text));
                if n % 1000 == 7 {
                    assert_eq!(line.text.len(), format!("cri line {n} ").len() + 300);
                }
                assert_eq!(line.stream, if n % 10 == 3 { "stderr" } else { "stdout" });
                assert_eq!(
                    n,
                    seen.len(),
                    "a line skipped or repeated; position before {before:?}; files {:?}",
                    files(&path)
                );
                seen.push(n);
            }
        }
        // what capstan saves with the lines, and starts again from
        pos = tailer.position().clone();
        restarts += 1;
        if finished && got == 0 && !raced {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let rotations = writer.join().unwrap();
    assert!(rotations >= 20, "the flood rotated {rotations} times");
    assert!(restarts > 10);
    assert_eq!(seen.len(), LINES, "every line once");
    assert!(seen.iter().enumerate().all(|(i, n)| i == *n), "in order");
}

/// The log's files with their inodes, for a failure's message.
fn files(path: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let ino = e.metadata().ok()?.ino();
            Some(format!("{} ino {ino}", e.file_name().to_string_lossy()))
        })
        .collect();
    names.sort();
    names
}
