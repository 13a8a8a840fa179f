//! capstan's registry client (the OCI distribution API): image references, token and basic auth
//! with Docker's credential stores, manifest HEADs with every manifest media type, paginated
//! tag listings, and the host platform's child of a multi-arch index.
//!
//! Checking for an update costs one HEAD per tag and, for tag policies, one paginated tag
//! listing per repository; a manifest is fetched (GET) only to look inside an index whose
//! digest changed. Every request is counted ([`Client::counts`]).

mod auth;
mod client;
mod dockerfile;
mod error;
pub mod logins;
mod reference;
mod version;

pub use auth::{Challenge, CredentialSource, Credentials, Found, parse_challenge};
pub use client::{
    Child, Client, Head, MANIFEST_MEDIA_TYPES, Manifest, Options, Platform, RateLimit,
    RequestCounts, parse_manifest, parse_tag_page,
};
pub use dockerfile::dockerfile_bases;
pub use error::Error;
pub use logins::{Login, Logins, registry_name};
pub use reference::{BadReference, DOCKER_HUB, DOCKER_HUB_API, Reference};
pub use version::{Choice, Policy, TagVersion, looks_like_git_sha};
