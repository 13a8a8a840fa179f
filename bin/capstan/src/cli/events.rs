//! `capstan events`.

use capstan_model::{Event, EventPage, ExitStatus};
use clap::Args;

use super::client::{Client, read_sse};
use super::table::Table;
use super::{Failure, local_time, print_json, short_id};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are journaled.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only this event type (image, container, network, volume, ...); repeatable.
    #[arg(long = "type", value_name = "T")]
    kinds: Vec<String>,
    /// Only this action (pull, tag, untag, delete, start, die, ...); repeatable.
    #[arg(long = "action", value_name = "A")]
    actions: Vec<String>,
    /// Only events about this image (id, reference or digest).
    #[arg(long)]
    image: Option<String>,
    /// From this time on: a duration ago (10m, 2h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "DUR|TIME")]
    since: Option<String>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_name = "DUR|TIME")]
    until: Option<String>,
    /// Only events of this fleet host (`local`: the hub's own).
    #[arg(long)]
    host: Option<String>,
    /// Most events to show (newest kept).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: EventsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(args.kinds.iter().map(|k| ("type", k.clone())));
    query.extend(args.actions.iter().map(|a| ("action", a.clone())));
    query.extend(args.image.iter().map(|i| ("image", i.clone())));
    query.extend(args.since.iter().map(|s| ("since", s.clone())));
    query.extend(args.until.iter().map(|u| ("until", u.clone())));
    query.extend(args.host.iter().map(|h| ("host", h.clone())));
    if args.follow {
        return follow(&client, query, args.out.output).await;
    }
    let mut events: Vec<Event> = Vec::new();
    let mut cursor: Option<String> = None;
    while events.len() < args.limit {
        let mut q = query.clone();
        q.push(("limit", (args.limit - events.len()).min(1000).to_string()));
        q.extend(cursor.iter().map(|c| ("cursor", c.clone())));
        let page: EventPage = client.get("/api/v1/events", &q).await?;
        events.extend(page.events);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    match args.out.output {
        Output::Json => print_json(&EventPage {
            events,
            next_cursor: cursor,
        }),
        Output::Table => {
            let mut table = Table::new(&["TIME", "TYPE", "ACTION", "ACTOR", "DETAIL", "SEEN"]);
            // oldest first, like `docker events`
            for e in events.iter().rev() {
                table.row(row(e));
            }
            table.print();
            Ok(())
        }
    }
}

fn row(e: &Event) -> Vec<String> {
    let actor = if e.actor.starts_with("sha256:") || e.actor.len() == 64 {
        short_id(&e.actor).to_owned()
    } else {
        e.actor.clone()
    };
    let detail = ["name", "image", "exitCode", "container", "type"]
        .iter()
        .filter_map(|k| e.attributes.get(*k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        local_time(e.time),
        e.kind.clone(),
        e.action.clone(),
        actor,
        detail,
        if e.inferred { "inferred" } else { "engine" }.to_owned(),
    ]
}

async fn follow(
    client: &Client,
    query: Vec<(&str, String)>,
    output: Output,
) -> Result<(), Failure> {
    let response = client.send("/api/v1/events/stream", &query).await?;
    read_sse(response, |data| {
        let event: Event = serde_json::from_str(data).map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: bad event from the daemon: {e}"),
            )
        })?;
        match output {
            Output::Json => println!("{data}"),
            Output::Table => println!("{}", row(&event).join("  ")),
        }
        Ok(())
    })
    .await
}
