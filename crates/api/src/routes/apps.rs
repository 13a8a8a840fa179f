use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use capstan_compose::Project;
use capstan_deploy::{Desired, Plan, plan, replicas_of_app};

use crate::{ApiError, AppState};

/// `POST /api/v1/apps/{app}/plan` with the resolved Compose model: what a deploy would change
/// and why. Changes nothing.
pub(crate) async fn plan_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: Result<Json<Project>, JsonRejection>,
) -> Result<Json<Plan>, ApiError> {
    let Json(project) = body.map_err(|e| ApiError::bad_param("body", e.body_text()))?;
    if project.name.as_deref() != Some(app.as_str()) {
        return Err(ApiError::bad_param(
            "app",
            format!(
                "the path names app {app:?} but the model is project {:?}",
                project.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    let containers = state.engine.list_containers(true).await?;
    let running = replicas_of_app(&app, &containers);
    let mut image_ids = BTreeMap::new();
    for (name, service) in &project.services {
        if let Some(image) = &service.image
            && let Some(found) = state.engine.inspect_image(image).await?
        {
            image_ids.insert(name.clone(), found.id);
        }
    }
    Ok(Json(plan(
        Desired {
            project: &project,
            previous: None,
            image_ids: &image_ids,
        },
        &running,
    )))
}
