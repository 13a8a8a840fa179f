//! The pipeline from a git push to a running release: a webhook's signature checked over the
//! raw body before anything is read ([`signature`]), its payload read into what changed
//! ([`payload`]), whether an app's source asks for a build ([`source`]), the delivery recorded
//! and a build queued ([`hooks`]); then the build fetched ([`git`]), built, pushed and deployed
//! ([`builder`]), its log written where the log collector reads it ([`buildlog`]).
//!
//! It owns the providers' formats and the decision to build. It must never deploy by itself:
//! a build ends in a release through `capstan-deploy`'s rollout, as any change does.

pub mod builder;
pub mod buildlog;
pub mod config;
pub mod context;
mod error;
pub mod git;
pub mod hooks;
pub mod payload;
pub mod signature;
pub mod source;

pub use builder::{BuildOptions, Builder, CancelError, Places, RetryError};
pub use config::PipelineConfig;
pub use error::Error;
pub use hooks::{Hooks, MAX_BODY, Received};
pub use payload::{Change, Delivery, PullRequest, Push};
pub use signature::{Provider, Refusal, verify};
pub use source::{Decision, Source, SourceExt};
