//! The plain Docker backend: one engine, containers named and labelled as Compose names them,
//! published ports through capstan's proxy, configs and secrets as files under the data dir.
//! The only part of the deploy job that names the engine's types.

mod down;
mod names;
mod prepare;
mod replicas;
mod route;
mod spec;
mod target;

pub use names::{Names, is_retiring, labels};
pub use prepare::must_pull;
pub use route::{
    EdgeConfig, EdgeLink, PORTS_LABEL, PortClaim, PortError, RouteError, Router, WantedNames,
    claims,
};
pub use spec::{SecretPaths, container_spec, network_spec, stops_first, udp_bindings, volume_spec};
pub(crate) use target::engine_error;
pub use target::{DockerTarget, needs_no_agent, pull_image};
