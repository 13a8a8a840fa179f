//! `capstan logs`: search the embedded log store, follow it live, or show the pipeline.

use capstan_model::{ExitStatus, LogLine, LogPage};
use clap::Args;

use super::client::{Client, read_sse};
use super::{Failure, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The query: words, "phrases", field:value (service, container, image, level, stream,
    /// app, host, project, replica, or any parsed field), AND, OR, NOT or -, parentheses, a
    /// trailing * for a prefix. Empty: every line.
    query: Vec<String>,
    /// From this time (RFC 3339) or this long ago (10m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Up to this time (RFC 3339) or this long ago.
    #[arg(long)]
    until: Option<String>,
    /// At most this many lines (the newest).
    #[arg(long, default_value_t = 100, conflicts_with = "all")]
    limit: usize,
    /// Every matching line, however many, oldest first, streamed as it is read (an export:
    /// with -o json, one line's JSON per line).
    #[arg(long, conflicts_with_all = ["follow", "stats"])]
    all: bool,
    /// With --all: `asc`, oldest first (the default), or `desc`, newest first.
    #[arg(long, value_enum, requires = "all")]
    order: Option<Order>,
    /// Lines stored after this position (a line's seq), oldest first: the next page, or where
    /// an export resumes.
    #[arg(long, conflicts_with_all = ["before", "follow"])]
    after: Option<u64>,
    /// Lines stored before this position (a line's seq), newest first: the previous page.
    #[arg(long, conflicts_with = "follow")]
    before: Option<u64>,
    /// Keep following: the last --tail matching lines, then new ones as they are stored.
    #[arg(short = 'f', long)]
    follow: bool,
    /// With -f: how many earlier lines to show first.
    #[arg(long, default_value_t = 10)]
    tail: usize,
    /// Show the collection pipeline's counters and the store's partitions instead.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: LogsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    if args.stats {
        let stats: serde_json::Value = client.get("/api/v1/logs/stats", &[]).await?;
        if args.out.output == Output::Json {
            return print_json(&stats);
        }
        let p = &stats["pipeline"];
        for key in [
            "containers",
            "lines_read",
            "bytes_read",
            "lines_stored",
            "lines_parsed",
            "parse_failures",
            "commits",
            "bad_records",
            "rotated_away_files",
            "rotated_away_lines",
            "store_errors",
            "last_seq",
            "lag_seconds",
        ] {
            println!("{key:<20} {}", p[key]);
        }
        if let Some(per) = p["rotated_away_by_container"].as_object() {
            for (name, loss) in per {
                println!(
                    "rotated away from {name}: {} files, ~{} lines",
                    loss["files"], loss["lines_estimated"]
                );
            }
        }
        for sink in stats["sinks"].as_array().into_iter().flatten() {
            println!(
                "sink {}  shipped {}  batches {}  failures {}  retried {}  rejected {}  cursor {}",
                sink["name"].as_str().unwrap_or_default(),
                sink["shipped"],
                sink["batches"],
                sink["failures"],
                sink["retried"],
                sink["rejected"],
                sink["cursor"]
            );
            if let Some(e) = sink["last_error"].as_str() {
                println!("  last error: {e}");
            }
        }
        for part in stats["partitions"].as_array().into_iter().flatten() {
            println!(
                "partition {}  {} lines  {} bytes  {} .. {}",
                part["name"].as_str().unwrap_or_default(),
                part["lines"],
                part["bytes"],
                part["oldest"].as_str().unwrap_or_default(),
                part["newest"].as_str().unwrap_or_default()
            );
        }
        return Ok(());
    }
    let q = args.query.join(" ");
    if args.follow {
        let query = vec![("q", q), ("tail", args.tail.to_string())];
        let response = client.send("/api/v1/logs/stream", &query).await?;
        return read_sse(response, |data| {
            let line: LogLine = serde_json::from_str(data).map_err(|e| {
                Failure::new(
                    ExitStatus::Failure,
                    format!("capstan: bad log line from the daemon: {e}"),
                )
            })?;
            match args.out.output {
                Output::Json => println!("{data}"),
                Output::Table => println!("{}", show(&line)),
            }
            Ok(())
        })
        .await;
    }
    if args.all {
        return export(&client, q, args).await;
    }
    let mut query = vec![("q", q), ("limit", args.limit.to_string())];
    query.extend(args.since.map(|s| ("since", s)));
    query.extend(args.until.map(|u| ("until", u)));
    query.extend(args.after.map(|a| ("after", a.to_string())));
    query.extend(args.before.map(|b| ("before", b.to_string())));
    let page: LogPage = client.get("/api/v1/logs", &query).await?;
    if args.out.output == Output::Json {
        return print_json(&page);
    }
    // oldest first, like a log (a page after a position already is)
    let ascending = args.after.is_some();
    let lines: Vec<&LogLine> = if ascending {
        page.lines.iter().collect()
    } else {
        page.lines.iter().rev().collect()
    };
    for line in lines {
        println!("{}", show(line));
    }
    if let Some(next) = page.next {
        let flag = if ascending { "--after" } else { "--before" };
        eprintln!(
            "({} of {} matching lines; the next page: {flag} {next}, or every line: --all)",
            page.lines.len(),
            page.total
        );
    }
    Ok(())
}

/// `--all`: every matching line through `GET /api/v1/logs/export`, written as it arrives.
async fn export(client: &Client, q: String, args: LogsArgs) -> Result<(), Failure> {
    use std::io::Write;
    let newest_first = args.order == Some(Order::Desc);
    if newest_first && args.after.is_some() {
        return Err(Failure::new(
            ExitStatus::Usage,
            "capstan: --after resumes an oldest-first export; newest first, resume with --before",
        ));
    }
    let order = if newest_first { "desc" } else { "asc" };
    let mut query = vec![("q", q), ("order", order.to_owned())];
    query.extend(args.since.map(|s| ("since", s)));
    query.extend(args.until.map(|u| ("until", u)));
    query.extend(args.after.map(|a| ("after", a.to_string())));
    query.extend(args.before.map(|b| ("before", b.to_string())));
    let response = client.send("/api/v1/logs/export", &query).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut last = None;
    let written = |e: std::io::Error| {
        // a closed pipe (| head) is the reader's choice, not a failure
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::new(ExitStatus::Success, String::new())
        } else {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: cannot write the lines: {e}"),
            )
        }
    };
    let read = super::client::read_lines(response, |data| {
        let line: LogLine = serde_json::from_str(data).map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: bad log line from the daemon: {e}"),
            )
        })?;
        last = Some(line.seq);
        match args.out.output {
            Output::Json => writeln!(out, "{data}"),
            Output::Table => writeln!(out, "{}", show(&line)),
        }
        .map_err(written)
    })
    .await;
    let flushed = out.flush().map_err(written);
    match read.and(flushed) {
        Err(f) if f.code == ExitStatus::Success => Ok(()),
        // where to pick up: an export resumes from a line's position
        Err(f) => Err(match last {
            Some(seq) => Failure::new(
                f.code,
                format!(
                    "{}\ncapstan: the export stopped after line {seq}; resume it with --all {}{seq}",
                    f.message,
                    if newest_first {
                        "--order desc --before "
                    } else {
                        "--after "
                    }
                ),
            ),
            None => f,
        }),
        Ok(()) => Ok(()),
    }
}

/// Which lines an export writes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

fn show(line: &LogLine) -> String {
    let time = line
        .time
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S%.3f");
    let stream = if line.origin.stream == "stderr" {
        " !"
    } else {
        ""
    };
    format!("{time}  {}{stream}  {}", line.origin.container, line.raw)
}
