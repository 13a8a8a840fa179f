//! Builds on the caller's side of the wire: the CLI packs each `build:` context (honouring
//! `.dockerignore`) and the daemon's engine builds it, so the context never has to be on the
//! daemon's host.

use std::path::PathBuf;

use capstan_compose::Project;
use capstan_model::ExitStatus;

use super::Failure;
use super::client::Client;
use crate::Output;

/// The image a built service runs: its `image`, else `<project>-<service>` as Compose names it.
pub fn image_name(project: &str, service: &str, image: Option<&str>) -> String {
    image.map_or_else(|| format!("{project}-{service}"), str::to_owned)
}

/// Builds every service with `build:` and points its `image` at the result.
pub async fn build_all(
    client: &Client,
    project: &mut Project,
    output: Output,
) -> Result<(), Failure> {
    let app = project.name.clone().unwrap_or_default();
    for (name, service) in &mut project.services {
        let Some(build) = &service.build else {
            continue;
        };
        let image = image_name(&app, name, service.image.as_deref());
        let dockerfile = build
            .dockerfile
            .clone()
            .unwrap_or_else(|| "Dockerfile".into());
        let context = PathBuf::from(&build.context);
        let tar = capstan_pipeline::context::pack(&context, &dockerfile).map_err(|e| {
            Failure::new(
                ExitStatus::Usage,
                format!(
                    "capstan: services.{name}.build: cannot pack {}: {e}",
                    context.display()
                ),
            )
        })?;
        let mut query = vec![("image", image.clone()), ("dockerfile", dockerfile)];
        if let Some(target) = &build.target {
            query.push(("target", target.clone()));
        }
        for (k, v) in &build.args {
            // an argument without a value takes the caller's environment, as in Compose
            if let Some(v) = v.clone().or_else(|| std::env::var(k).ok()) {
                query.push(("arg", format!("{k}={v}")));
            }
        }
        if output == Output::Table {
            println!(
                "{name:<16} building {image} from {} ({} KiB of context)",
                context.display(),
                tar.len().div_ceil(1024)
            );
        }
        let answer: serde_json::Value = client
            .post_bytes(&format!("/api/v1/apps/{app}/build/{name}"), &query, tar)
            .await?;
        if output == Output::Table {
            println!(
                "{name:<16} built {image} ({})",
                super::short_id(answer["id"].as_str().unwrap_or_default())
            );
        }
        service.image = Some(image);
    }
    Ok(())
}
