use std::time::Duration;

use axum::Json;
use axum::extract::State;
use capstan_model::{EngineHealth, Health, JournalHealth, nanos_to_datetime};

use crate::{ApiError, AppState};

/// How long health waits for the engine before calling it unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /api/v1/health`: open to all; says whether the engine answers and how the journal is.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    responses(
        (status = 200, description = "open to all: whether the engine answers and how the journal is", body = Health)
    ),
    security(()),
)]
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let host = state.engine.host().to_owned();
    let (last, events) = state.store.journal_position().await?;
    let journal = JournalHealth {
        connected: state.journal.connected(),
        events,
        last_event: last.map(nanos_to_datetime),
        reconnects: state.journal.reconnects(),
    };
    if !state.engine_on {
        // a node agent: there is no engine to be unreachable
        return Ok(Json(Health {
            status: "ok".to_owned(),
            version: state.version.to_owned(),
            engine: EngineHealth {
                host: String::new(),
                reachable: false,
                version: None,
                api_version: None,
                error: Some(
                    "this capstan runs without a Docker engine ([docker] enabled = false): it collects the pod logs of its node"
                        .to_owned(),
                ),
            },
            journal,
        }));
    }
    let engine = match tokio::time::timeout(PING_TIMEOUT, state.engine.version()).await {
        Ok(Ok(v)) => EngineHealth {
            host,
            reachable: true,
            version: Some(v.version),
            // capstan speaks every version up to bollard's, newer than any engine here: the
            // negotiated version is the engine's own
            api_version: Some(v.api_version),
            error: None,
        },
        Ok(Err(err)) => EngineHealth {
            host,
            reachable: false,
            version: None,
            api_version: None,
            error: Some(err.to_string()),
        },
        Err(_) => EngineHealth {
            error: Some(format!(
                "docker engine at {host} did not answer within {}s (is dockerd running?)",
                PING_TIMEOUT.as_secs()
            )),
            host,
            reachable: false,
            version: None,
            api_version: None,
        },
    };
    Ok(Json(Health {
        status: if engine.reachable { "ok" } else { "degraded" }.to_owned(),
        version: state.version.to_owned(),
        engine,
        journal,
    }))
}
