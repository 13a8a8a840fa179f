//! Deliveries to other systems' endpoints, as the log sinks and the notifiers make them: one
//! HTTP client set-up (timeouts, TLS with a private CA or a client certificate, no proxy from
//! the environment), authentication, the reading of an answer into a body or an [`Error`]
//! (status, `Retry-After`, whether trying again can help), secrets that never print,
//! exponential backoff with jitter, and the cursor file of a consumer that delivers at least once.

mod backoff;
mod cursor;
mod error;
mod http;
mod secret;

pub use backoff::{Backoff, sleep};
pub use cursor::{check_name, read_cursor, write_cursor};
pub use error::Error;
pub use http::{
    Auth, BasicAuth, TlsConfig, check_headers, client, data_rejected, endpoint, join, send,
};
pub use secret::Secret;
