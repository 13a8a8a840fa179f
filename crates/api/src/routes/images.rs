use axum::Json;
use axum::extract::{Path, Query, State};
use capstan_model::{ImageDetail, ImageList};

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// `GET /api/v1/images[?all=true][&reference=SUBSTRING][&dangling=true|false]`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<ImageList>, ApiError> {
    params::only(&pairs, &["all", "reference", "dangling"])?;
    let all = params::flag(&pairs, "all")?.unwrap_or(false);
    let dangling = params::flag(&pairs, "dangling")?;
    let reference = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "reference")
        .map(|(_, v)| v.clone());
    let mut images = state.store.images(all).await?;
    images.retain(|i| {
        dangling.is_none_or(|d| i.repo_tags.is_empty() == d)
            && reference
                .as_ref()
                .is_none_or(|r| i.repo_tags.iter().any(|t| t.contains(r.as_str())))
    });
    Ok(Json(ImageList { images }))
}

/// `GET /api/v1/images/{id-or-reference}`: one image with its lifecycle, also when deleted.
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ImageDetail>, ApiError> {
    let key = key.trim_start_matches('/').to_owned();
    if key.is_empty() {
        return Err(ApiError::bad_param("image", "empty image id or reference"));
    }
    match state.store.image_detail(key.clone()).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no image {key:?} in the inventory (list them with: capstan images --all)"),
        )),
    }
}
