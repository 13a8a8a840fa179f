//! Compose files, read and resolved on the caller's side: parse (with file, line and column for
//! every value), interpolate from the environment and `.env`, merge several files in order,
//! apply profiles, validate strictly against the Compose spec (unknown keys are errors, `x-`
//! keys are ignored, valid keys capstan does not implement are warnings), and resolve what
//! lives on the caller's disk (env files, secret and config files, build contexts, bind paths).
//!
//! It must never talk to the engine or the daemon: the result is a plain model the CLI posts.

mod de;
mod emit;
mod env;
mod error;
mod interpolate;
mod load;
mod merge;
pub mod model;
mod node;
pub mod routes;

pub use emit::to_yaml;
pub use error::{Error, Warning};
pub use interpolate::interpolate;
pub use load::{Loaded, Options, load};
pub use model::{Project, PullPolicy};
pub use node::Pos;

/// Parses one YAML document (Compose's scalar rules, merge keys applied) into JSON, with errors
/// that name `file`, line and column.
///
/// # Errors
/// [`Error::Yaml`] when `text` is not valid YAML.
pub fn parse_yaml(file: &str, text: &str) -> Result<serde_json::Value, Error> {
    node::Node::parse(file, text).map(|n| n.to_json())
}
