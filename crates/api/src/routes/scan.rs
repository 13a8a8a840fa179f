//! Vulnerability scans: of one image, of every running container's image, and the advisory
//! database they match against.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use capstan_model::{ContainerFindings, ScanReport, VulnDbStatus};

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// The largest advisory import accepted (Debian's whole OSV export is a few hundred MiB).
pub const IMPORT_LIMIT: usize = 1 << 30;

fn scan_error(e: capstan_scan::Error) -> ApiError {
    match e {
        capstan_scan::Error::NoImage(_) => ApiError::new(Code::NotFound, e.to_string()),
        capstan_scan::Error::Engine(e) => e.into(),
        e @ capstan_scan::Error::TooLarge { .. } => ApiError::new(Code::Failed, e.to_string()),
        e @ (capstan_scan::Error::Db(_)
        | capstan_scan::Error::Saved(_)
        | capstan_scan::Error::Scratch { .. }
        | capstan_scan::Error::Task(_)) => ApiError::new(Code::Internal, e.to_string()),
    }
}

/// Whether `text` is an image id (`sha256:` and hex, or a prefix of 12 or more hex digits).
fn is_id(text: &str) -> bool {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    (12..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An image id (`sha256:` and 64 hex digits, or a prefix of 12 or more) or a reference Docker
/// would take: checked here, because the engine reads what it is given as part of a URL path
/// (`/etc` would be a redirect, not a missing image).
fn check_image(text: &str) -> Result<(), ApiError> {
    if is_id(text) {
        return Ok(());
    }
    capstan_registry::Reference::parse(text)
        .map(drop)
        .map_err(|e| {
            ApiError::bad_param(
                "image",
                format!(
                    "{:?} is neither an image id nor a reference: {}",
                    e.reference, e.reason
                ),
            )
        })
}

/// `POST /api/v1/images/scan?image=REF[&refresh=true]`: the image's OS packages matched against
/// the advisory database (layers read once, then cached; `refresh` reads them again). A
/// reference the engine lacks is pulled first, with its registry's credentials.
#[utoipa::path(
    post,
    path = "/api/v1/images/scan",
    tag = "images",
    params(
        ("image" = String, Query, description = "an image reference or id"),
        ("refresh" = Option<bool>, Query, description = "read the layers again instead of using the cache")
    ),
    responses(
        (status = 200, description = "OK", body = ScanReport),
        (status = 404, description = "the engine has no such image, and it cannot be pulled", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn scan(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<ScanReport>, ApiError> {
    params::only(&pairs, &["image", "refresh"])?;
    let image = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "image")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_param("image", "give the image to scan (a reference or an id)")
        })?;
    check_image(&image)?;
    let refresh = params::flag(&pairs, "refresh")?.unwrap_or(false);
    let report = match state.scanner.scan(&image, refresh).await {
        // a reference the engine lacks is pulled (with its registry's credentials) first
        Err(capstan_scan::Error::NoImage(_)) if !is_id(&image) => {
            capstan_deploy::pull_image(&state.engine, Some(&state.registries), &image)
                .await
                .map_err(|e| match e {
                    capstan_deploy::TargetError::Failed { .. } => {
                        ApiError::new(Code::NotFound, e.to_string())
                    }
                    e => e.into(),
                })?;
            state.scanner.scan(&image, refresh).await
        }
        other => other,
    }
    .map_err(scan_error)?;
    Ok(Json(report))
}

/// `GET /api/v1/images/findings`: every running container with what its image's scan found
/// (images scanned once each, layers from the cache).
#[utoipa::path(
    get,
    path = "/api/v1/images/findings",
    tag = "images",
    responses(
        (status = 200, description = "every running container with what its image's scan found", body = Vec<ContainerFindings>)
    )
)]
pub(crate) async fn findings(
    State(state): State<AppState>,
) -> Result<Json<Vec<ContainerFindings>>, ApiError> {
    let containers = state.engine.list_containers(false).await?;
    let mut reports: BTreeMap<String, Result<ScanReport, String>> = BTreeMap::new();
    let mut out = Vec::new();
    for c in containers {
        if !reports.contains_key(&c.image_id) {
            let r = state
                .scanner
                .scan(&c.image_id, false)
                .await
                .map_err(|e| e.to_string());
            reports.insert(c.image_id.clone(), r);
        }
        let (counts, error) = match &reports[&c.image_id] {
            Ok(r) => {
                let mut counts = BTreeMap::new();
                for f in &r.findings {
                    *counts.entry(f.severity).or_insert(0) += 1;
                }
                (counts, None)
            }
            Err(e) => (BTreeMap::new(), Some(e.clone())),
        };
        out.push(ContainerFindings {
            container: c.name,
            image: c.image,
            id: c.image_id,
            counts,
            error,
        });
    }
    Ok(Json(out))
}

/// One OSV advisory (<https://ossf.github.io/osv-schema/>), the fields an import reads.
/// Documentation only: the body is checked by `capstan_scan::osv`.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "the body is read by capstan_scan::osv")]
pub(crate) struct OsvAdvisory {
    id: String,
    modified: String,
    summary: Option<String>,
    aliases: Option<Vec<String>>,
    /// `{package: {ecosystem, name}, ranges, versions, ecosystem_specific}` each.
    affected: Vec<serde_json::Value>,
    /// `{type, score}` each.
    severity: Option<Vec<serde_json::Value>>,
}

/// `GET /api/v1/vulndb`: what the advisory database holds.
#[utoipa::path(
    get,
    path = "/api/v1/vulndb",
    tag = "images",
    responses(
        (status = 200, description = "OK", body = VulnDbStatus)
    )
)]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<VulnDbStatus>, ApiError> {
    let db = state.scanner.db().clone();
    let status = tokio::task::spawn_blocking(move || db.status())
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    Ok(Json(status))
}

/// `POST /api/v1/vulndb`: imports OSV advisories (a JSON array, or one advisory). All or
/// nothing: one that does not parse rejects the whole body.
#[utoipa::path(
    post,
    path = "/api/v1/vulndb",
    tag = "images",
    request_body(content = Vec<OsvAdvisory>, description = "OSV advisories: an array, or one advisory"),
    responses(
        (status = 200, description = "after the import; all or nothing", body = VulnDbStatus)
    )
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<VulnDbStatus>, ApiError> {
    let db = state.scanner.db().clone();
    let status = tokio::task::spawn_blocking(move || {
        let advisories = capstan_scan::osv::parse("the request body", &body)
            .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?;
        db.import(&advisories)
            .map_err(|e| ApiError::new(Code::Internal, e.to_string()))
    })
    .await
    .map_err(|e| ApiError::new(Code::Internal, e.to_string()))??;
    Ok(Json(status))
}
