//! The deploy job: turns a resolved Compose model into what the engine runs.
//!
//! This first part owns the translation of a service into a container specification (every
//! Compose key capstan implements, checked on the created container by the tests) and the names
//! and labels of everything an app owns. It must never read the caller's files (the CLI did) nor
//! talk to bollard (the engine layer does).

mod apply;
mod autoupdate;
mod error;
mod files;
mod heal;
mod names;
pub mod plan;
mod release;
mod route;
mod spec;
pub mod units;

pub use apply::{DeployRequest, Deployer, Outcome, Progress, Report, ServiceReport, file_digests};
pub use autoupdate::AutoUpdater;
pub use error::Error;
pub use files::FileContent;
pub use heal::Healer;
pub use names::{Names, labels};
pub use plan::{
    Action, Desired, Plan, Replica, ServicePlan, desired_hash, plan, replicas_of_app, spec_hash,
    start_levels,
};
pub use release::{AppLock, AppLocks, ReleaseError, hold, new_release, running_model};
pub use route::{PORTS_LABEL, PortClaim, Router, claims};
pub use spec::{SecretPaths, container_spec};
