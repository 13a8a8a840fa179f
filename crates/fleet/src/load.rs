//! The agent's load mode (`capstan fleet-load`, for the hub-cost benchmark): many simulated
//! hosts in one process, each joined with a token of its own and speaking the agent's protocol
//! over a connection of its own — hello every few seconds, and what a busy host ships: log lines
//! of its containers at a steady rate and a sweep of their metrics every so often. Nothing is
//! kept on disk but each host's identity and join.

use std::path::PathBuf;
use std::time::Duration;

use capstan_model::{LogLine, Origin, Sample};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agent::{AgentError, Joined, connect, join};
use crate::hub::{Hello, LineBatch, SweepBatch, Taken, Welcome};
use crate::identity::Identity;
use crate::token::JoinToken;

/// What each simulated host sends.
#[derive(Debug, Clone)]
pub struct Load {
    /// The hub's fleet address.
    pub url: String,
    /// One join token per host (used once; a host joined before keeps its join in `dir`).
    pub tokens: Vec<String>,
    /// Where each host keeps its identity and join (`<dir>/<n>`).
    pub dir: PathBuf,
    /// Log lines a second, per host (0: none).
    pub lines_per_second: u32,
    /// Containers per host (their lines and metrics).
    pub containers: u32,
    /// How often a host sends a sweep of its containers' metrics (zero: never).
    pub metrics_every: Duration,
}

/// Joins every host (those that joined before are not joined again), then runs them until
/// `shutdown`.
///
/// # Errors
/// A host cannot join.
pub async fn run(load: Load, shutdown: CancellationToken) -> Result<(), AgentError> {
    let mut hosts = Vec::with_capacity(load.tokens.len());
    for (n, token) in load.tokens.iter().enumerate() {
        let dir = load.dir.join(n.to_string());
        let identity = Identity::load_or_create(&dir, "capstan-host").map_err(AgentError::Usage)?;
        let joined = match Joined::load(&dir).map_err(AgentError::Usage)? {
            Some(j) => j,
            None => {
                let token =
                    JoinToken::parse(token).map_err(|e| AgentError::Usage(e.to_string()))?;
                join(&load.url, &token, &format!("sim-{n}"), &identity, &dir).await?
            }
        };
        hosts.push((n, joined, identity));
    }
    info!(hosts = hosts.len(), "simulated hosts joined");
    let mut tasks = Vec::new();
    for (n, joined, identity) in hosts {
        let (load, shutdown) = (load.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(e) = simulate(n, &joined, &identity, &load, &shutdown).await {
                    warn!(host = n, error = %e, "a simulated host's link dropped; again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Host `n`'s container `c`.
fn origin(n: usize, c: u32) -> Origin {
    Origin {
        container: format!("sim-{n}-c{c}"),
        container_id: format!("{n:08x}{c:056x}"),
        image: "sim/app:1".to_owned(),
        stream: "stdout".to_owned(),
        ..Origin::default()
    }
}

fn now_nanos() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// One connection's life of simulated host `n`.
async fn simulate(
    n: usize,
    joined: &Joined,
    identity: &Identity,
    load: &Load,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    let url = joined.url.as_str();
    let mut conn = connect(url, identity, &joined.hub).await?;
    let hello = Hello {
        engine: "simulated".to_owned(),
        lag: std::collections::BTreeMap::new(),
    };
    let welcome: Welcome = conn.call(url, "/fleet/v1/hello", &hello).await?;
    let mut seq = welcome
        .cursors
        .get("logs")
        .and_then(|c| u64::try_from(*c).ok())
        .unwrap_or(0);
    // ten batches a second, the rate spread over them
    let tick = Duration::from_millis(100);
    let per_tick = load.lines_per_second.div_ceil(10);
    let mut ticks = tokio::time::interval(tick);
    let mut hello_at = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut sweep_at = tokio::time::Instant::now() + load.metrics_every;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        if per_tick > 0 {
            let time_nano = now_nanos();
            let lines: Vec<LogLine> = (0..per_tick)
                .map(|i| {
                    seq += 1;
                    let c = i % load.containers.max(1);
                    LogLine {
                        seq,
                        id: format!("sim:{n}:{seq}"),
                        time_nano,
                        time: chrono::DateTime::from_timestamp_nanos(time_nano),
                        raw: format!("GET /api/items/{seq} 200 in 3ms user=sim{n} container={c}"),
                        origin: origin(n, c),
                        ..LogLine::default()
                    }
                })
                .collect();
            let _: Taken = conn
                .call(url, "/fleet/v1/logs", &LineBatch { last: seq, lines })
                .await?;
        }
        let now = tokio::time::Instant::now();
        if !load.metrics_every.is_zero() && now >= sweep_at {
            sweep_at = now + load.metrics_every;
            let t = now_nanos() / 1_000_000;
            let samples: Vec<Sample> = (0..load.containers)
                .flat_map(|c| {
                    let labels = vec![("name".to_owned(), format!("sim-{n}-c{c}"))];
                    [
                        ("container_cpu_usage_seconds_total", f64::from(c) * 1.5),
                        ("container_memory_usage_bytes", 64.0 * 1024.0 * 1024.0),
                        ("container_memory_working_set_bytes", 48.0 * 1024.0 * 1024.0),
                        ("container_network_receive_bytes_total", 1e6),
                        ("container_network_transmit_bytes_total", 2e6),
                    ]
                    .map(|(name, value)| Sample {
                        name: name.to_owned(),
                        labels: labels.clone(),
                        value,
                    })
                })
                .collect();
            let _: Taken = conn
                .call(
                    url,
                    "/fleet/v1/metrics",
                    &SweepBatch {
                        sweeps: vec![(t, samples)],
                    },
                )
                .await?;
        }
        if now >= hello_at {
            hello_at = now + Duration::from_secs(5);
            let _: Welcome = conn.call(url, "/fleet/v1/hello", &hello).await?;
        }
    }
}
