//! Offline vulnerability scanning. An image's layers are read through the engine (`docker
//! save`), and from each only its package databases are kept (dpkg's `status` and
//! `status.d/`, apk's `installed`, `os-release`), cached per layer digest: a layer is read
//! once, whichever images share it. The installed packages are matched against OSV advisories
//! imported into a local database (`capstan vulndb import`), with the package manager's own
//! version order deciding "affected" and "fixed".

mod db;
mod layers;
pub mod osv;
pub mod packages;
mod pulls;
mod scan;
pub mod version;

pub use db::{DbError, VulnDb};
pub use layers::SavedError;
pub use pulls::scan_pulls;
pub use scan::{Error, Scanner};
