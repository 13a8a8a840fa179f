//! `capstan ps`.

use capstan_model::ContainerList;
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json, short_id};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Include stopped containers.
    #[arg(short = 'a', long)]
    all: bool,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(args: PsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let query = if args.all {
        vec![("all", "true".to_owned())]
    } else {
        Vec::new()
    };
    let list: ContainerList = client.get("/api/v1/containers", &query).await?;
    if args.out.output == Output::Json {
        return print_json(&list);
    }
    let mut table = Table::new(&[
        "CONTAINER ID",
        "NAME",
        "IMAGE",
        "STATE",
        "STATUS",
        "CREATED",
    ]);
    for c in &list.containers {
        table.row(vec![
            short_id(&c.id).to_owned(),
            c.name.clone(),
            c.image.clone(),
            c.state.clone(),
            c.status.clone(),
            local_time(c.created),
        ]);
    }
    table.print();
    Ok(())
}
