//! The pipeline from a git push to a running release: a webhook's signature checked over the
//! raw body before anything is read ([`signature`]), its payload read into what changed
//! ([`payload`]), and whether an app's source asks for a build ([`source`]).
//!
//! It owns the providers' formats and the decision to build. It must never deploy by itself:
//! a build ends in a release through `capstan-deploy`'s rollout, as any change does.

pub mod context;
mod error;
pub mod hooks;
pub mod payload;
pub mod signature;
pub mod source;

pub use error::Error;
pub use hooks::{Hooks, MAX_BODY, Received};
pub use payload::{Change, Delivery, PullRequest, Push};
pub use signature::{Provider, Refusal, verify};
pub use source::{Decision, Source, SourceExt};
