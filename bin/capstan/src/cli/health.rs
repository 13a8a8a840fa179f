//! `capstan health`.

use capstan_model::{ExitStatus, Health};

use super::client::Client;
use super::{Failure, local_time, print_json};
use crate::{Output, OutputArgs};

/// Prints health; exits 3 with the engine's message when the engine cannot be reached (a
/// node agent, which has none by design, is healthy).
pub async fn run(args: OutputArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let health: Health = client.get("/api/v1/health", &[]).await?;
    if args.output == Output::Json {
        print_json(&health)?;
    } else {
        let e = &health.engine;
        println!("status    {}", health.status);
        // a node agent runs without an engine, and says why
        if e.host.is_empty() {
            println!("engine    none: {}", e.error.as_deref().unwrap_or("?"));
            return Ok(());
        }
        println!(
            "engine    {} {}",
            e.host,
            if e.reachable {
                format!(
                    "reachable (docker {}, api {})",
                    e.version.as_deref().unwrap_or("?"),
                    e.api_version.as_deref().unwrap_or("?")
                )
            } else {
                "NOT reachable".to_owned()
            }
        );
        let j = &health.journal;
        println!(
            "journal   {}, {} events, last {}, {} reconnects",
            if j.connected {
                "following"
            } else {
                "disconnected"
            },
            j.events,
            j.last_event.map_or_else(|| "-".to_owned(), local_time),
            j.reconnects
        );
    }
    match health.engine.error {
        Some(err) if !health.engine.reachable && health.status != "ok" => Err(Failure::new(
            ExitStatus::Unreachable,
            format!("capstan: {err}"),
        )),
        _ => Ok(()),
    }
}
