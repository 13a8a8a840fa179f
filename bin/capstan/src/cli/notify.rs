//! `capstan notify`: the notification channels and how their deliveries went.

use capstan_model::NotifyChannels;

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::{Output, OutputArgs};

pub async fn run(args: OutputArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let list: NotifyChannels = client.get("/api/v1/notify", &[]).await?;
    if args.output == Output::Json {
        return print_json(&list);
    }
    let mut table = Table::new(&[
        "CHANNEL",
        "TYPE",
        "EVENTS",
        "SENT",
        "FAILED",
        "REFUSED",
        "LAST SENT",
        "LAST ERROR",
    ]);
    for c in &list.channels {
        table.row(vec![
            c.name.clone(),
            c.kind.clone(),
            c.events.join(","),
            c.sent.to_string(),
            c.failed.to_string(),
            c.rejected.to_string(),
            c.last_sent.map_or_else(|| "-".to_owned(), local_time),
            c.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table.print();
    if list.channels.is_empty() {
        println!("no notification channel is configured (add [[notify]] to capstan.toml)");
    }
    Ok(())
}
