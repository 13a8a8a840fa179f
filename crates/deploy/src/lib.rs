//! The deploy job: turns a resolved Compose model into what runs, and keeps it running.
//!
//! It owns the release logic, written once for every target: the plan (what changes and why),
//! the rollout engine (start order, batches, health gates, draining, automatic rollback,
//! NDJSON progress), the ledger of releases and rollbacks, self-healing and automatic updates.
//! Where replicas run is behind the [`Target`] seam; the plain Docker engine is its first
//! backend ([`docker`]), which alone translates a service into a container specification and
//! keeps capstan's proxy in step. It must never read the caller's files (the CLI did) nor talk
//! to bollard (the engine layer does).

mod autoupdate;
pub mod docker;
mod error;
mod files;
mod heal;
mod looks;
mod operate;
mod pins;
pub mod plan;
pub mod policy;
pub mod prune;
mod redeploy;
mod release;
mod request;
mod rollout;
mod secrets;
pub mod swarm;
pub mod target;
pub mod targets;
pub mod telemetry;
pub mod units;

pub use autoupdate::AutoUpdater;
pub use capstan_model::{Action, Outcome, Plan, Progress, Report, ServicePlan, ServiceReport};
pub use docker::{
    DockerTarget, EdgeConfig, EdgeLink, Names, PORTS_LABEL, PortClaim, Router, SecretPaths,
    WantedNames, claims, container_spec, is_retiring, labels, must_pull, needs_no_agent,
    network_spec, pull_image, volume_spec,
};
pub use error::{
    CheckError, Error, FileGone, GateError, HealError, LaunchError, ReleaseError, RequestError,
    TargetError,
};
pub use files::FileContent;
pub use heal::Healer;
pub use looks::Looks;
pub use operate::{OperateError, Operation};
pub use pins::{Pins, Resolve};
pub use plan::{Desired, desired_hash, plan, spec_hash, start_levels};
pub use redeploy::{ImageChange, RedeployError, hold_when_free};
pub use release::{new_release, ran_files, running_model, running_release, target_of};
pub use request::{DeployRequest, file_digests, position_of};
pub use rollout::Deployer;
pub use secrets::{SecretStore, sealed_items};
pub use swarm::SwarmTarget;
pub use target::{Replica, ServiceProgress, Target, refuse_routes};
