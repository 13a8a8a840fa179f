//! `capstan images` and `capstan images history IMAGE`.

use capstan_model::{ImageDetail, ImageList, ImageUpdates};
use clap::{Args, Subcommand};

use super::client::Client;
use super::table::Table;
use super::{Failure, human_size, local_time, print_json, short_id};
use crate::{Output, OutputArgs};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: Option<ImagesCommand>,
    /// Include deleted images (kept with their history).
    #[arg(short = 'a', long)]
    all: bool,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Show an image's lifecycle: pulled, built, tagged, pushed, deleted...
    History {
        /// Image id (or 12+ character prefix), reference (repo:tag) or digest.
        image: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show each watched image: what runs, the newest candidate, the policy, the last check,
    /// and why a candidate was or was not chosen.
    Updates {
        /// Check every registry now and show the result.
        #[arg(long)]
        check_now: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn run(args: ImagesArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(ImagesCommand::History { image, out }) => history(&client, &image, out.output).await,
        Some(ImagesCommand::Updates { check_now, out }) => {
            updates(&client, check_now, out.output).await
        }
        None => list(&client, args.all, args.out.output).await,
    }
}

async fn list(client: &Client, all: bool, output: Output) -> Result<(), Failure> {
    let query = if all {
        vec![("all", "true".to_owned())]
    } else {
        Vec::new()
    };
    let list: ImageList = client.get("/api/v1/images", &query).await?;
    if output == Output::Json {
        return print_json(&list);
    }
    let mut table = Table::new(&[
        "IMAGE ID",
        "TAGS",
        "SIZE",
        "LAYERS",
        "CONTAINERS",
        "CREATED",
        "STATUS",
    ]);
    for i in &list.images {
        table.row(vec![
            short_id(&i.id).to_owned(),
            if i.repo_tags.is_empty() {
                "<none>".to_owned()
            } else {
                i.repo_tags.join(", ")
            },
            human_size(i.size),
            i.layers.to_string(),
            i.containers.to_string(),
            i.created.map(local_time).unwrap_or_default(),
            i.deleted.map_or_else(
                || "present".to_owned(),
                |d| format!("deleted {}", local_time(d)),
            ),
        ]);
    }
    table.print();
    Ok(())
}

async fn history(client: &Client, image: &str, output: Output) -> Result<(), Failure> {
    let path = format!("/api/v1/images/{}", encode_path(image));
    let detail: ImageDetail = client.get(&path, &[]).await?;
    if output == Output::Json {
        return print_json(&detail);
    }
    let i = &detail.image;
    println!(
        "image {}  {}  {}  {} layers{}",
        i.id,
        if i.repo_tags.is_empty() {
            "<none>".to_owned()
        } else {
            i.repo_tags.join(", ")
        },
        human_size(i.size),
        i.layers,
        i.deleted
            .map_or_else(String::new, |d| format!("  deleted {}", local_time(d)))
    );
    let mut table = Table::new(&["TIME", "ACTION", "REFERENCE", "SEEN"]);
    for h in &detail.history {
        table.row(vec![
            local_time(h.time),
            h.action.as_str().to_owned(),
            h.reference.clone().unwrap_or_default(),
            if h.inferred { "inferred" } else { "engine" }.to_owned(),
        ]);
    }
    table.print();
    Ok(())
}

async fn updates(client: &Client, check_now: bool, output: Output) -> Result<(), Failure> {
    let list: ImageUpdates = if check_now {
        client
            .post("/api/v1/images/updates/check", &serde_json::json!({}))
            .await?
    } else {
        client.get("/api/v1/images/updates", &[]).await?
    };
    if output == Output::Json {
        return print_json(&list);
    }
    let short = |d: &Option<String>| {
        d.as_deref().map_or_else(
            || "-".to_owned(),
            |d| d.trim_start_matches("sha256:").chars().take(12).collect(),
        )
    };
    let mut table = Table::new(&["IMAGE", "POLICY", "RUNNING", "UPDATE", "CHECKED", "WHY"]);
    for u in &list.updates {
        let update = match (&u.candidate, u.content_changed, &u.waiting) {
            (Some(c), _, _) => format!("{} ({})", c.tag, short(&Some(c.digest.clone()))),
            (None, true, _) => format!("new content ({})", short(&u.tag_child)),
            (None, false, Some(w)) => format!("{} (waits for its minimum age)", w.tag),
            (None, false, None) => "-".to_owned(),
        };
        let why = match (&u.error, &u.auto) {
            (Some(e), _) => format!("check failed: {e}"),
            (None, Some(auto)) => format!("{}; auto-update: {auto}", u.reason),
            (None, None) => u.reason.clone(),
        };
        table.row(vec![
            u.reference.clone(),
            u.policy.clone(),
            short(&u.running),
            update,
            local_time(u.checked_at),
            why,
        ]);
    }
    table.print();
    if list.updates.is_empty() {
        println!(
            "no image is watched yet (the first check runs shortly after start; --check-now runs one)"
        );
    }
    Ok(())
}

/// Percent-encodes what a path segment cannot hold (`/` stays: the route takes the rest).
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'/'
            | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
