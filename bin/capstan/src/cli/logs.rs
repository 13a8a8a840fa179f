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
    #[arg(long, default_value_t = 100)]
    limit: usize,
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
    let mut query = vec![("q", q), ("limit", args.limit.to_string())];
    query.extend(args.since.map(|s| ("since", s)));
    query.extend(args.until.map(|u| ("until", u)));
    let page: LogPage = client.get("/api/v1/logs", &query).await?;
    if args.out.output == Output::Json {
        return print_json(&page);
    }
    // oldest first, like a log
    for line in page.lines.iter().rev() {
        println!("{}", show(line));
    }
    if page.total > page.lines.len() as u64 {
        eprintln!(
            "({} of {} matching lines; raise --limit or narrow the time range)",
            page.lines.len(),
            page.total
        );
    }
    Ok(())
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
