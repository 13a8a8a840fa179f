//! `capstan top`: every running container's CPU, memory, network and block IO, like
//! `docker stats` but at once (from what the collector already read).

use capstan_model::ContainerStats;
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, human_size, print_json};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Rates over this window (`10s`, `1m`); default: between the last two readings.
    #[arg(long)]
    window: Option<String>,
    /// Redraw every second until interrupted.
    #[arg(short, long)]
    watch: bool,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: TopArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let query: Vec<(&str, String)> = args.window.iter().map(|w| ("window", w.clone())).collect();
    loop {
        let stats: Vec<ContainerStats> = client.get("/api/v1/metrics/containers", &query).await?;
        if args.out.output == Output::Json {
            print_json(&stats)?;
        } else {
            if args.watch {
                // clear the screen, cursor home
                print!("\x1b[2J\x1b[H");
            }
            print_table(&stats);
        }
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |b| format!("{}/s", human_size(b as i64)))
}

fn print_table(stats: &[ContainerStats]) {
    let mut table = Table::new(&[
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET RX",
        "NET TX",
        "BLOCK R",
        "BLOCK W",
        "THREADS",
    ]);
    for s in stats {
        let mem = s.memory_working_set_bytes.or(s.memory_usage_bytes);
        let mem_pct = match (mem, s.memory_limit_bytes) {
            (Some(m), Some(l)) if l > 0 => format!("{:.1}%", m as f64 * 100.0 / l as f64),
            _ => "-".to_owned(),
        };
        table.row(vec![
            s.name.clone(),
            s.cpu_cores
                .map_or_else(|| "-".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            format!(
                "{} / {}",
                mem.map_or_else(|| "-".to_owned(), |m| human_size(m as i64)),
                s.memory_limit_bytes
                    .map_or_else(|| "no limit".to_owned(), |l| human_size(l as i64))
            ),
            mem_pct,
            rate(s.network_rx_bytes_per_second),
            rate(s.network_tx_bytes_per_second),
            rate(s.block_read_bytes_per_second),
            rate(s.block_write_bytes_per_second),
            s.threads.map_or_else(|| "-".to_owned(), |t| t.to_string()),
        ]);
    }
    table.print();
    if stats.is_empty() {
        println!(
            "no running container has been read yet (the collector reads every [metrics] interval)"
        );
    }
}
