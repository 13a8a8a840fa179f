//! The `capstan` binary: the daemon (`capstan serve`) and the CLI that talks to it.

mod cli;
mod config;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use capstan_model::ExitStatus;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The version and the commit it was built from (`bin/capstan/build.rs`).
pub(crate) const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("CAPSTAN_COMMIT"), ")");

/// What `serve` and `agent` run with.
#[derive(Debug, Args)]
struct DaemonArgs {
    /// Config file (capstan.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default: $CAPSTAN_DATA, /var/lib/capstan as root, else ~/.local/share/capstan).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to serve the API on (default 127.0.0.1:7878).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Docker engine address (default: $DOCKER_HOST, else unix:///var/run/docker.sock).
    #[arg(long)]
    docker_host: Option<String>,
}

/// capstan runs a fleet of containers by itself.
#[derive(Debug, Parser)]
#[command(name = "capstan", version = VERSION, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: journal the engine's events and serve the API.
    Serve(DaemonArgs),
    /// Run as a host of a fleet: what `serve` runs here, plus a link to the hub (dialed out;
    /// the hub never connects to the host). The first start joins with a token from
    /// `capstan hosts join-token` on the hub; later starts reconnect by themselves.
    Agent {
        /// The hub's fleet address (`https://HOST:PORT`, its `[fleet] listen`); first start only.
        /// Also read from CAPSTAN_JOIN (the package's /etc/capstan/agent.env sets both).
        #[arg(long, requires = "token", env = "CAPSTAN_JOIN")]
        join: Option<String>,
        /// The join token (`capstan hosts join-token` on the hub); first start only. Also read
        /// from CAPSTAN_JOIN_TOKEN (a Secret's, in a Kubernetes DaemonSet).
        #[arg(
            long,
            requires = "join",
            env = "CAPSTAN_JOIN_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// The host's name in the fleet (default: its host name).
        #[arg(long)]
        name: Option<String>,
        /// Stop when the process that started this one is gone (a hub runs agents for hosts
        /// without one with this).
        #[arg(long, hide = true)]
        exit_with_parent: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Simulated fleet hosts against a hub, for the hub-cost benchmark (bench/src/fleet.rs).
    #[command(hide = true)]
    FleetLoad {
        /// The hub's fleet address (`https://HOST:PORT`).
        #[arg(long)]
        join: String,
        /// A file of join tokens, one per line: one simulated host each.
        #[arg(long)]
        tokens: PathBuf,
        /// Where each host keeps its identity and join.
        #[arg(long)]
        dir: PathBuf,
        /// Log lines a second, per host.
        #[arg(long, default_value_t = 100)]
        lines_per_second: u32,
        /// Containers per host.
        #[arg(long, default_value_t = 50)]
        containers: u32,
        /// How often each host sends its containers' metrics (`0s`: never).
        #[arg(long, default_value = "10s")]
        metrics_every: String,
    },
    /// Run the proxy for published ports (the daemon starts it and re-adopts it; it outlives
    /// the daemon so restarting the daemon drops no connection).
    Proxy {
        /// Data directory of the daemon it serves (same default as `serve`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Stop the running proxy of that data dir instead (it lets open connections
        /// finish); a package's removal runs this.
        #[arg(long)]
        stop: bool,
    },
    /// Show the journal of engine events.
    Events(cli::events::EventsArgs),
    /// List images in the inventory, or show one image's lifecycle.
    Images(cli::images::ImagesArgs),
    /// Search every container's logs, follow them live (-f), or show the pipeline (--stats).
    Logs(cli::logs::LogsArgs),
    /// List containers.
    Ps(cli::ps::PsArgs),
    /// Show the notification channels and how their deliveries went.
    Notify(OutputArgs),
    /// Show every running container's CPU, memory, network and block IO (like docker stats).
    Top(cli::top::TopArgs),
    /// Query the metrics history (`capstan metrics 'rate(container_cpu_usage_seconds_total[1m])' --since 1h`).
    Metrics(cli::metrics::MetricsArgs),
    /// Show firing and pending alerts, their history, the rules; test a rule.
    Alerts(cli::alerts::AlertsArgs),
    /// List, create and revoke API tokens with roles (viewer, operator, admin).
    Tokens(cli::tokens::TokensArgs),
    /// List the fleet's hosts (on the hub), make join tokens, remove a host
    Hosts(cli::hosts::HostsArgs),
    /// Show and change the deploy policy: host-level features (bind mounts, privileged,
    /// capabilities) allowed per app.
    Policy(cli::policy::PolicyArgs),
    /// List registry credentials, log in to a registry (checked, kept sealed), log out.
    Registries(cli::registries::RegistriesArgs),
    /// Show an app's git webhook (its URL; its secret, once), set its source, list the last
    /// deliveries and what came of them.
    Hooks(cli::hooks::HooksArgs),
    /// List the builds git pushes queued; show one, print or follow its log, cancel it.
    Builds(cli::builds::BuildsArgs),
    /// List where apps run (the local engine, each Swarm and Kubernetes cluster of [[targets]])
    /// and how each is doing.
    Targets(cli::targets::TargetsArgs),
    /// Seal the kept secrets again under new keys (`capstan secrets rotate-key`, capstan stopped).
    Secrets(cli::secrets::SecretsArgs),
    /// Show the audit log: every request that changed something, who, when, from where.
    Audit(cli::tokens::AuditArgs),
    /// List, add and remove the users who sign in to the dashboard.
    Users(cli::tokens::UsersArgs),
    /// Show the advisory database image scans match against, or import OSV advisories.
    Vulndb(cli::vulndb::VulnDbArgs),
    /// Check how safely the host's containers run (CIS Docker Benchmark ids) and how to fix it.
    Security(cli::security::SecurityArgs),
    /// Show whether the daemon, the engine and the journal are healthy.
    Health(OutputArgs),
    /// Check Compose files and print the resolved model (no daemon needed).
    Config(cli::config::ConfigArgs),
    /// Show what a deploy of Compose files would change, and why (changes nothing).
    Plan(cli::plan::PlanArgs),
    /// Print the objects a Kubernetes target would get for Compose files (touches nothing).
    Render(cli::render::RenderArgs),
    /// Print capstan's own objects for a Kubernetes target: the node agent (a DaemonSet
    /// collecting every node's pod logs) and the deployer's Role (apply with kubectl)
    RenderSelf(cli::render_self::RenderSelfArgs),
    /// Deploy Compose files as a new release (health-gated; rolls back by itself on failure).
    Deploy(cli::apps::DeployArgs),
    /// List deployed apps.
    Apps(OutputArgs),
    /// Show an app's release ledger.
    Releases(cli::apps::ReleasesArgs),
    /// Remove an app's containers and networks (and volumes with --volumes).
    Down(cli::apps::DownArgs),
    /// Deploy an earlier release again, with the image digests it ran.
    Rollback(cli::apps::RollbackArgs),
    /// Change how many replicas services run (`capstan scale APP web=3`): a release of its own.
    Scale(cli::apps::ScaleArgs),
    /// Back an app's named volumes up now into the restic repository of [backups].
    Backup(cli::backups::BackupArgs),
    /// List an app's backup snapshots, newest first.
    Backups(cli::backups::BackupsArgs),
    /// Put a snapshot back into its volume (the services that mount it stopped meanwhile).
    Restore(cli::backups::RestoreArgs),
    /// Stop an app's replicas (all, a service's, or one); they stay stopped: self-healing
    /// leaves them until `capstan start` or the app's next release.
    Stop(cli::apps::OperateArgs),
    /// Start stopped replicas, each waited on through its health gate.
    Start(cli::apps::OperateArgs),
    /// Restart replicas one at a time: each out of rotation, drained, restarted, and back once
    /// it is healthy before the next.
    Restart(cli::apps::OperateArgs),
    /// Run a command in a replica (`capstan exec APP SERVICE -it -- sh`); its exit code is
    /// capstan's.
    Exec(cli::exec::ExecArgs),
}

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document (one object per line when following).
    Json,
}

/// `-o table|json`.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

// glibc's allocator spent a sixth of the log pipeline's CPU under a flood (many threads
// allocating and freeing small strings); mimalloc does the same work for much less. Its v2:
// v3 keeps freed pages for a second (ten in its arenas) before giving them back, which under a
// flood held tens of MiB past `[logs] memory` and once slowed the pipeline eightfold; v2 gives
// them back after 10 ms
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config(args) = &cli.command {
        return cli::finish(cli::config::run(args));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("capstan: cannot start the async runtime: {err}");
            return ExitCode::from(ExitStatus::Failure.code());
        }
    };
    match cli.command {
        Command::Serve(daemon_args) => daemon(&runtime, daemon_args, None),
        Command::Agent {
            join,
            token,
            name,
            exit_with_parent,
            daemon: daemon_args,
        } => daemon(
            &runtime,
            daemon_args,
            Some(AgentArgs {
                join,
                token,
                name,
                exit_with_parent,
            }),
        ),
        Command::FleetLoad {
            join,
            tokens,
            dir,
            lines_per_second,
            containers,
            metrics_every,
        } => {
            init_tracing();
            let every = if metrics_every == "0s" {
                Ok(std::time::Duration::ZERO)
            } else {
                capstan_model::parse_duration(&metrics_every)
            };
            let (every, tokens) = match (every, std::fs::read_to_string(&tokens)) {
                (Ok(every), Ok(text)) => (
                    every,
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                (Err(e), _) => {
                    eprintln!("capstan fleet-load: --metrics-every: {e}");
                    return ExitCode::from(ExitStatus::Usage.code());
                }
                (_, Err(e)) => {
                    eprintln!("capstan fleet-load: {}: {e}", tokens.display());
                    return ExitCode::from(ExitStatus::Usage.code());
                }
            };
            let load = capstan_fleet::Load {
                url: join,
                tokens,
                dir,
                lines_per_second,
                containers,
                metrics_every: every,
            };
            let shutdown = tokio_util::sync::CancellationToken::new();
            runtime.spawn(capstan_process::stop_on_signals(
                shutdown.clone(),
                "stopping the simulated hosts",
            ));
            match runtime.block_on(capstan_fleet::run_load(load, shutdown)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("capstan fleet-load: {e}");
                    ExitCode::from(ExitStatus::Usage.code())
                }
            }
        }
        Command::Proxy { data, stop: true } => {
            let data = data.unwrap_or_else(config::default_data_dir);
            let client = capstan_proxy::ProxyClient::new(&data, None);
            match runtime.block_on(client.stop()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(capstan_proxy::Error::NotRunning) => {
                    eprintln!("capstan proxy: no proxy runs for {}", data.display());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("capstan proxy: cannot stop it: {err}");
                    ExitCode::from(ExitStatus::Failure.code())
                }
            }
        }
        Command::Proxy { data, stop: false } => {
            init_tracing();
            let data = data.unwrap_or_else(config::default_data_dir);
            match runtime.block_on(capstan_proxy::run(&data)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("capstan proxy: {err}");
                    ExitCode::from(ExitStatus::Failure.code())
                }
            }
        }
        Command::Events(args) => cli::finish(runtime.block_on(cli::events::run(args))),
        Command::Images(args) => cli::finish(runtime.block_on(cli::images::run(args))),
        Command::Ps(args) => cli::finish(runtime.block_on(cli::ps::run(args))),
        Command::Logs(args) => cli::finish(runtime.block_on(cli::logs::run(args))),
        Command::Health(args) => cli::finish(runtime.block_on(cli::health::run(args))),
        Command::Notify(args) => cli::finish(runtime.block_on(cli::notify::run(args))),
        Command::Top(args) => cli::finish(runtime.block_on(cli::top::run(args))),
        Command::Metrics(args) => cli::finish(runtime.block_on(cli::metrics::run(args))),
        Command::Alerts(args) => cli::finish(runtime.block_on(cli::alerts::run(args))),
        Command::Tokens(args) => cli::finish(runtime.block_on(cli::tokens::run(args))),
        Command::Hosts(args) => cli::finish(runtime.block_on(cli::hosts::run(args))),
        Command::Policy(args) => cli::finish(runtime.block_on(cli::policy::run(args))),
        Command::Registries(args) => cli::finish(runtime.block_on(cli::registries::run(args))),
        Command::Hooks(args) => cli::finish(runtime.block_on(cli::hooks::run(args))),
        Command::Builds(args) => cli::finish(runtime.block_on(cli::builds::run(args))),
        Command::Targets(args) => cli::finish(runtime.block_on(cli::targets::run(args))),
        Command::Secrets(args) => cli::finish(cli::secrets::run(args)),
        Command::Audit(args) => cli::finish(runtime.block_on(cli::tokens::audit(args))),
        Command::Users(args) => cli::finish(runtime.block_on(cli::tokens::users(args))),
        Command::Vulndb(args) => cli::finish(runtime.block_on(cli::vulndb::run(args))),
        Command::Security(args) => cli::finish(runtime.block_on(cli::security::run(args))),
        Command::Plan(args) => cli::finish(runtime.block_on(cli::plan::run(args))),
        Command::Render(args) => cli::finish(runtime.block_on(cli::render::run(args))),
        Command::RenderSelf(args) => cli::finish(runtime.block_on(cli::render_self::run(args))),
        Command::Deploy(args) => cli::finish(runtime.block_on(cli::apps::deploy(args))),
        Command::Apps(args) => cli::finish(runtime.block_on(cli::apps::apps(args))),
        Command::Releases(args) => cli::finish(runtime.block_on(cli::apps::releases(args))),
        Command::Down(args) => cli::finish(runtime.block_on(cli::apps::down(args))),
        Command::Rollback(args) => cli::finish(runtime.block_on(cli::apps::rollback(args))),
        Command::Scale(args) => cli::finish(runtime.block_on(cli::apps::scale(args))),
        Command::Backup(args) => cli::finish(runtime.block_on(cli::backups::backup(args))),
        Command::Backups(args) => cli::finish(runtime.block_on(cli::backups::list(args))),
        Command::Restore(args) => cli::finish(runtime.block_on(cli::backups::restore(args))),
        Command::Stop(args) => cli::finish(runtime.block_on(cli::apps::operate("stop", args))),
        Command::Start(args) => cli::finish(runtime.block_on(cli::apps::operate("start", args))),
        Command::Exec(args) => match runtime.block_on(cli::exec::run(args)) {
            Ok(code) => {
                let _ = std::io::Write::flush(&mut std::io::stdout());
                // now: a thread may still wait on the terminal's input
                std::process::exit(code)
            }
            Err(failure) => cli::finish(Err(failure)),
        },
        Command::Restart(args) => {
            cli::finish(runtime.block_on(cli::apps::operate("restart", args)))
        }
        // handled above: it needs no runtime and no daemon
        Command::Config(_) => ExitCode::SUCCESS,
    }
}

/// `capstan agent`'s own flags.
struct AgentArgs {
    join: Option<String>,
    token: Option<String>,
    name: Option<String>,
    exit_with_parent: bool,
}

/// `capstan serve`, and `capstan agent` (`agent`: joined to a hub first when it has not been).
fn daemon(
    runtime: &tokio::runtime::Runtime,
    args: DaemonArgs,
    agent: Option<AgentArgs>,
) -> ExitCode {
    let DaemonArgs {
        config,
        data,
        listen,
        docker_host,
    } = args;
    let config = config.as_deref();
    init_tracing();
    let usage = |err: anyhow::Error| {
        eprintln!("capstan: {err:#}");
        ExitCode::from(ExitStatus::Usage.code())
    };
    let file = match config.map(config::Config::read).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(err) => return usage(err),
    };
    // the vault opens before the config is checked: it may name credentials kept there
    let data = data
        .or(file.data.clone())
        .unwrap_or_else(config::default_data_dir);
    let opened = match serve::open(&data) {
        Ok(opened) => opened,
        Err(err) => {
            eprintln!("capstan: {err:#}");
            return ExitCode::from(ExitStatus::Failure.code());
        }
    };
    if let Err(err) = file.check() {
        let place = config
            .map(|p| format!("invalid config file {}: ", p.display()))
            .unwrap_or_default();
        return usage(anyhow::anyhow!("{place}{err:#}"));
    }
    let exit_with_parent = agent.as_ref().is_some_and(|a| a.exit_with_parent);
    let agent = match agent
        .map(|a| runtime.block_on(joined_hub(&data, a)))
        .transpose()
    {
        Ok(agent) => agent,
        Err(failure) => return cli::finish(Err(failure)),
    };
    let opts = serve::ServeOptions {
        file,
        data: opened,
        listen,
        docker_host,
        agent,
        exit_with_parent,
    };
    match runtime.block_on(serve::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("capstan: {err:#}");
            ExitCode::from(ExitStatus::Failure.code())
        }
    }
}

/// The hub this host joined (`<data>/fleet/hub.json`), joining it first with `--join` and
/// `--token` when it has not.
async fn joined_hub(
    data: &std::path::Path,
    args: AgentArgs,
) -> Result<(capstan_fleet::Joined, capstan_fleet::Identity), cli::Failure> {
    let failure = |code: ExitStatus, e: &dyn std::fmt::Display| {
        cli::Failure::new(code, format!("capstan agent: {e}"))
    };
    let dir = data.join("fleet");
    let identity = capstan_fleet::Identity::load_or_create(&dir.join("host"), "capstan-host")
        .map_err(|e| failure(ExitStatus::Failure, &e))?;
    let kept = capstan_fleet::Joined::load(&dir).map_err(|e| failure(ExitStatus::Failure, &e))?;
    match (kept, args.join, args.token) {
        (Some(joined), join, _) => {
            if join.is_some_and(|url| url != joined.url) {
                return Err(failure(
                    ExitStatus::Usage,
                    &format!(
                        "this host is in the fleet of {} as {}; to move it, remove {} there and its data dir's fleet/hub.json here",
                        joined.url, joined.name, joined.name
                    ),
                ));
            }
            Ok((joined, identity))
        }
        (None, Some(url), Some(token)) => {
            let token = capstan_fleet::JoinToken::parse(&token)
                .map_err(|e| failure(ExitStatus::Usage, &e))?;
            let name = args.name.unwrap_or_else(capstan_model::host_name);
            let joined = capstan_fleet::join(&url, &token, &name, &identity, &dir)
                .await
                .map_err(|e| {
                    let code = match e {
                        capstan_fleet::AgentError::Unreachable { .. } => ExitStatus::Unreachable,
                        _ => ExitStatus::Usage,
                    };
                    failure(code, &e)
                })?;
            eprintln!("joined the fleet of {url} as {}", joined.name);
            Ok((joined, identity))
        }
        (None, _, _) => Err(failure(
            ExitStatus::Usage,
            &"this host has not joined a fleet: capstan agent --join https://HUB:PORT --token TOKEN (a token from `capstan hosts join-token` on the hub)",
        )),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colours for a terminal; plain text for journald, `docker logs` and files
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// docs/ARCHITECTURE.md's table has a row for every crate of the workspace: a crate added
    /// without saying what it owns and what it must never do fails here.
    #[test]
    fn architecture_names_every_crate() {
        let root = Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
        )
        .join("../..");
        let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
        let mut crates = vec!["bin/capstan".to_owned()];
        for entry in std::fs::read_dir(root.join("crates")).unwrap() {
            let entry = entry.unwrap();
            if entry.path().join("Cargo.toml").exists() {
                crates.push(format!("crates/{}", entry.file_name().to_string_lossy()));
            }
        }
        assert!(crates.len() > 10, "found only {crates:?}");
        let missing: Vec<&String> = crates
            .iter()
            .filter(|c| !doc.contains(&format!("| `{c}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/ARCHITECTURE.md has no row for {missing:?}"
        );
    }
}
