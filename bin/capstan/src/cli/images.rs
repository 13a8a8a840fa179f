//! `capstan images` and `capstan images history IMAGE`.

use capstan_model::{
    ContainerFindings, ExitStatus, ImageDetail, ImageList, ImageUpdates, ScanReport, Severity,
};
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
    /// The images a Kubernetes target's pods were seen running (by digest), instead of this
    /// engine's.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
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
    /// Scan an image's OS packages against the advisory database (`capstan vulndb import`);
    /// with --running, every running container's image.
    Scan {
        /// Image reference or id.
        #[arg(required_unless_present = "running", conflicts_with = "running")]
        image: Option<String>,
        /// Every running container, with its findings by severity.
        #[arg(long)]
        running: bool,
        /// Exit 1 when a finding is at or above this severity (unknown, low, medium, high,
        /// critical).
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<capstan_model::Severity>,
        /// Read the image's layers again instead of from the cache.
        #[arg(long)]
        refresh: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Remove the images capstan deployed or built that none of their app's last releases
    /// and no container use (images capstan did not bring are never touched); trim the build
    /// cache.
    Prune {
        /// Each app's latest releases whose images stay (default: [images] prune_keep, 3).
        #[arg(long)]
        keep: Option<u32>,
        /// Say what would go; remove nothing.
        #[arg(long)]
        dry_run: bool,
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
        Some(ImagesCommand::Scan {
            image,
            running,
            fail_on,
            refresh,
            out,
        }) => match image {
            Some(image) if !running => scan(&client, &image, refresh, fail_on, out.output).await,
            _ => scan_running(&client, fail_on, out.output).await,
        },
        Some(ImagesCommand::Prune { keep, dry_run, out }) => {
            prune(&client, keep, dry_run, out.output).await
        }
        None => list(&client, args.all, args.target, args.out.output).await,
    }
}

async fn prune(
    client: &Client,
    keep: Option<u32>,
    dry_run: bool,
    output: Output,
) -> Result<(), Failure> {
    let mut query = Vec::new();
    if let Some(n) = keep {
        query.push(format!("keep={n}"));
    }
    if dry_run {
        query.push("dry_run=true".to_owned());
    }
    let path = if query.is_empty() {
        "/api/v1/images/prune".to_owned()
    } else {
        format!("/api/v1/images/prune?{}", query.join("&"))
    };
    let report: capstan_model::PruneReport = client.post(&path, &serde_json::json!({})).await?;
    if output == Output::Json {
        return print_json(&report);
    }
    let mut table = Table::new(&["IMAGE", "TAGS", "SIZE", "APPS", "DONE"]);
    let done = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (image, what) in report
        .removed
        .iter()
        .map(|i| (i, done))
        .chain(report.left.iter().map(|i| (i, "left")))
    {
        table.row(vec![
            short_id(&image.id).to_owned(),
            image.tags.join(", "),
            human_size(image.size),
            image.apps.join(", "),
            if image.reason.is_empty() {
                what.to_owned()
            } else {
                format!("{what}: {}", image.reason)
            },
        ]);
    }
    table.print();
    println!(
        "{} image(s) {done}, {} (each app's last {} releases keep theirs); build cache: {} given back",
        report.removed.len(),
        human_size(report.reclaimed),
        report.keep,
        human_size(report.build_cache_reclaimed)
    );
    Ok(())
}

async fn list(
    client: &Client,
    all: bool,
    target: Option<String>,
    output: Output,
) -> Result<(), Failure> {
    let mut query = Vec::new();
    if all {
        query.push(("all", "true".to_owned()));
    }
    let on_cluster = target.is_some();
    if let Some(t) = target {
        query.push(("target", t));
    }
    let list: ImageList = client.get("/api/v1/images", &query).await?;
    if output == Output::Json {
        return print_json(&list);
    }
    if on_cluster {
        // what the cluster's pods ran: by digest, with the references that named it
        let mut table = Table::new(&["DIGEST", "REFERENCES", "PODS", "FIRST SEEN", "LAST SEEN"]);
        for i in &list.images {
            let digest = i.id.split_once(':').map_or(i.id.as_str(), |(_, h)| h);
            table.row(vec![
                digest.get(..12).unwrap_or(digest).to_owned(),
                i.repo_tags.join(", "),
                i.containers.to_string(),
                local_time(i.first_seen),
                local_time(i.last_seen),
            ]);
        }
        table.print();
        return Ok(());
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
    if !list.stale.is_empty() {
        println!("\nstale: the tag names another image on this host than these containers run");
        let mut table = Table::new(&["IMAGE", "CONTAINERS", "RUNNING", "TAG NOW"]);
        let digest_or_id = |digest: &Option<String>, id: &str| match digest {
            Some(d) => format!("{} (id {})", short(&Some(d.clone())), short_id(id)),
            None => format!("id {}", short_id(id)),
        };
        for s in &list.stale {
            table.row(vec![
                s.reference.clone(),
                s.containers.join(", "),
                digest_or_id(&s.running_digest, &s.running_id),
                digest_or_id(&s.tag_digest, &s.tag_id),
            ]);
        }
        table.print();
        println!("(capstan deploy applies what the tag names now)");
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

/// Exit 1 (after printing) when something is at or above `level`.
pub(crate) fn verdict(worst: Option<Severity>, level: Option<Severity>) -> Result<(), Failure> {
    match (worst, level) {
        (Some(w), Some(l)) if w >= l => Err(Failure::new(
            ExitStatus::Failure,
            format!("capstan: findings at or above {l} (the worst is {w})"),
        )),
        _ => Ok(()),
    }
}

async fn scan(
    client: &Client,
    image: &str,
    refresh: bool,
    fail_on: Option<Severity>,
    output: Output,
) -> Result<(), Failure> {
    let mut query = vec![("image", image.to_owned())];
    if refresh {
        query.push(("refresh", "true".to_owned()));
    }
    let path = format!(
        "/api/v1/images/scan?{}",
        query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_path(v).replace('/', "%2F")))
            .collect::<Vec<_>>()
            .join("&")
    );
    let report: ScanReport = client.post(&path, &serde_json::json!({})).await?;
    if output == Output::Json {
        print_json(&report)?;
        return verdict(report.worst(), fail_on);
    }
    let mut table = Table::new(&[
        "SEVERITY",
        "PACKAGE",
        "INSTALLED",
        "FIXED",
        "ADVISORY",
        "SUMMARY",
    ]);
    for f in &report.findings {
        let package = if f.source == f.package {
            f.package.clone()
        } else {
            format!("{} ({})", f.package, f.source)
        };
        let advisory = match f.aliases.first() {
            Some(alias) => format!("{} ({alias})", f.advisory),
            None => f.advisory.clone(),
        };
        table.row(vec![
            f.severity.to_string(),
            package,
            f.installed.clone(),
            f.fixed.clone().unwrap_or_else(|| "no fix yet".to_owned()),
            advisory,
            f.summary.chars().take(60).collect(),
        ]);
    }
    if !report.findings.is_empty() {
        table.print();
    }
    println!(
        "{} ({}): {} packages, {} findings; os {}, {} advisories for it; {} of {} layers read (the rest cached)",
        report.image,
        short_id(&report.id),
        report.packages,
        report.findings.len(),
        report.os.as_deref().unwrap_or("not recognised"),
        report.advisories,
        report.layers_read,
        report.layers
    );
    if report.advisories == 0 {
        println!(
            "the database has no advisories for this image's OS: import some with capstan vulndb import"
        );
    }
    verdict(report.worst(), fail_on)
}

async fn scan_running(
    client: &Client,
    fail_on: Option<Severity>,
    output: Output,
) -> Result<(), Failure> {
    let list: Vec<ContainerFindings> = client.get("/api/v1/images/findings", &[]).await?;
    let worst = list.iter().flat_map(|c| c.counts.keys().copied()).max();
    if output == Output::Json {
        print_json(&list)?;
        return verdict(worst, fail_on);
    }
    let mut table = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
        "UNKNOWN",
    ]);
    for c in &list {
        let n = |s: Severity| c.counts.get(&s).copied().unwrap_or(0).to_string();
        let mut row = vec![c.container.clone(), c.image.clone()];
        match &c.error {
            Some(e) => row.extend([
                format!("scan failed: {e}"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]),
            None => row.extend([
                n(Severity::Critical),
                n(Severity::High),
                n(Severity::Medium),
                n(Severity::Low),
                n(Severity::Unknown),
            ]),
        }
        table.row(row);
    }
    table.print();
    verdict(worst, fail_on)
}
