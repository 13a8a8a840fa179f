//! `capstan config`: load Compose files on the caller's side and print the resolved model. No
//! daemon needed.

use std::path::PathBuf;

use capstan_compose::{Options, load, to_yaml};
use capstan_model::ExitStatus;
use clap::{Args, ValueEnum};

use super::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigOutput {
    /// YAML, as Compose prints it.
    Yaml,
    /// One JSON document.
    Json,
}

/// Where the Compose files are and how to read them (shared by config, plan and deploy).
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose file; repeat to merge several in order (default: compose.yaml in this directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the file's `name:`, or the directory's name).
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Enable services of this profile; repeatable (also COMPOSE_PROFILES).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Variables for interpolation (default: .env next to the first file).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
}

impl ComposeArgs {
    /// Loads the project; errors are bad input (exit 2), warnings go to stderr.
    pub fn load(&self) -> Result<capstan_compose::Loaded, Failure> {
        let working_dir = std::env::current_dir().map_err(|e| {
            Failure::new(
                ExitStatus::Failure,
                format!("capstan: cannot read the current directory: {e}"),
            )
        })?;
        let loaded = load(&Options {
            files: self.files.clone(),
            project_name: self.project_name.clone(),
            profiles: self.profiles.clone(),
            environment: std::env::vars().collect(),
            env_file: self.env_file.clone(),
            working_dir,
            text: None,
        })
        .map_err(|e| Failure::new(ExitStatus::Usage, format!("capstan: {e}")))?;
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        Ok(loaded)
    }
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    compose: ComposeArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ConfigOutput::Yaml)]
    output: ConfigOutput,
    /// Only check the files; print nothing but warnings and errors.
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let loaded = args.compose.load()?;
    if args.quiet {
        return Ok(());
    }
    let value = serde_json::to_value(&loaded.project).map_err(|e| {
        Failure::new(
            ExitStatus::Failure,
            format!("capstan: cannot encode the model: {e}"),
        )
    })?;
    match args.output {
        ConfigOutput::Json => super::print_json(&value)?,
        ConfigOutput::Yaml => print!("{}", to_yaml(&value)),
    }
    Ok(())
}

/// What `plan` and `deploy` post: the model, the contents of its configs and secrets (read
/// here, on the caller's side) and where it came from.
pub fn deploy_request(
    args: &ComposeArgs,
    loaded: capstan_compose::Loaded,
) -> Result<capstan_deploy::DeployRequest, Failure> {
    let paths: Vec<String> = if args.files.is_empty() {
        vec!["compose.yaml".to_owned()]
    } else {
        args.files.iter().map(|f| f.display().to_string()).collect()
    };
    let git_commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&loaded.project_dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let source = serde_json::json!({
        "files": paths,
        "directory": loaded.project_dir.display().to_string(),
        "git_commit": git_commit,
        "positions": loaded.positions,
    });
    capstan_deploy::DeployRequest::from_project(
        loaded.project,
        |_, _, obj| {
            Ok(if let Some(path) = &obj.file {
                Some(capstan_deploy::FileContent::from_bytes(
                    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?,
                ))
            } else if let Some(var) = &obj.environment {
                Some(capstan_deploy::FileContent::Text(
                    std::env::var(var).map_err(|_| format!("variable {var} is not set"))?,
                ))
            } else {
                obj.content.clone().map(capstan_deploy::FileContent::Text)
            })
        },
        source,
    )
    .map_err(|e| Failure::new(ExitStatus::Usage, format!("capstan: {e}")))
}
