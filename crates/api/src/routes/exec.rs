//! `capstan exec`: a command run in one replica of an app, over a WebSocket. Everything that
//! can be refused is refused before the upgrade, as an HTTP error: an app that does not run
//! here, a replica that is not there or not running, a command the engine cannot start, and an
//! operator asking into an app the deploy policy would not let them deploy as it runs (a
//! privileged container is the host).
//!
//! The protocol (subprotocol `capstan.exec`): the client's binary messages are the command's
//! input, its text messages JSON controls: `{"resize": [cols, rows]}`, `{"eof": true}` (closes
//! the input). The server's binary messages are the output: as the TTY gives it, or without a
//! TTY one stream byte (`1` stdout, `2` stderr) then the bytes. Its last message is a text
//! `{"exit": CODE}`, then it closes.

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::BytesMut;
use capstan_model::ErrorCode as Code;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::apps::{check_app, place, policy_role, policy_violations};
use crate::ApiError;
use crate::AppState;
use crate::auth::Principal;
use crate::params::{self, Pairs};
use capstan_deploy::policy;

/// The subprotocol a client must offer.
pub(crate) const PROTOCOL: &str = "capstan.exec";

/// The longest command line taken (its arguments together).
const MAX_COMMAND: usize = 64 * 1024;

/// A control message from the client.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default)]
    resize: Option<(u16, u16)>,
    #[serde(default)]
    eof: bool,
}

/// `GET /api/v1/apps/{app}/exec?service=S[&replica=N]&cmd=…[&cmd=…][&tty=true][&cols=C&rows=R]`
/// upgraded to a WebSocket: runs the command in the replica (default 1).
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/exec",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app"),
        ("service" = String, Query, description = "the service"),
        ("replica" = Option<u32>, Query, description = "the replica (from 1; default 1)"),
        ("cmd" = Vec<String>, Query, description = "the command and its arguments, one `cmd` each, in order"),
        ("tty" = Option<bool>, Query, description = "give it a terminal"),
        ("cols" = Option<u16>, Query, description = "the terminal's columns"),
        ("rows" = Option<u16>, Query, description = "the terminal's rows")
    ),
    responses(
        (status = 101, description = "a WebSocket (subprotocol capstan.exec) carrying the command's input and output, then {\"exit\": CODE}"),
        (status = 400, description = "no command, no service, or a bad number", body = capstan_model::ErrorBody),
        (status = 403, description = "the app's release needs an admin under the deploy policy", body = capstan_model::ErrorBody),
        (status = 404, description = "no such app, service or replica", body = capstan_model::ErrorBody),
        (status = 409, description = "the replica is not running, or the app runs on another target", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn exec(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_app(&app)?;
    params::only(
        &pairs,
        &["service", "replica", "cmd", "tty", "cols", "rows"],
    )?;
    let service = params::last(&pairs, "service")
        .ok_or_else(|| ApiError::bad_param("service", "name the service to run the command in"))?
        .to_owned();
    let replica = params::number::<u32>(&pairs, "replica")?.unwrap_or(1);
    let cmd: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "cmd")
        .map(|(_, v)| v.clone())
        .collect();
    if cmd.is_empty() || cmd[0].is_empty() {
        return Err(ApiError::bad_param(
            "cmd",
            "say what to run: cmd=sh (each argument a cmd of its own)",
        ));
    }
    if cmd.iter().map(String::len).sum::<usize>() > MAX_COMMAND {
        return Err(ApiError::bad_param("cmd", "the command is over 64 KiB"));
    }
    let tty = params::flag(&pairs, "tty")?.unwrap_or(false);
    let size = match (
        params::number::<u16>(&pairs, "cols")?,
        params::number::<u16>(&pairs, "rows")?,
    ) {
        (Some(c), Some(r)) if c > 0 && r > 0 => Some((c, r)),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_param(
                "cols",
                "give both cols and rows, each at least 1",
            ));
        }
    };
    let Ok(ws) = ws else {
        return Err(ApiError::new(
            Code::BadRequest,
            "this is a WebSocket (subprotocol capstan.exec): capstan exec and the dashboard's terminal speak it",
        ));
    };
    let place = place(&state, &app, None).await?;
    if let Some(target) = &place.deployer.place {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "app {app} runs on target {target}: exec reaches replicas on this capstan's own engine (run capstan exec against the host's own capstan)"
            ),
        ));
    }
    // an operator gets into what they could deploy as it runs: a container the policy keeps
    // for admins (privileged, a host path) is the host
    if policy_role(who.as_ref()) == policy::Deployer::Restricted {
        let req = place.deployer.running_request(&state.store, &app).await?;
        let found = policy_violations(&state, &req, who.as_ref()).await?;
        if !found.is_empty() {
            let what: Vec<String> = found
                .iter()
                .map(|v| format!("  {}: {}", v.key, v.message))
                .collect();
            return Err(ApiError::new(
                Code::Forbidden,
                format!(
                    "exec into {app} needs an admin: as it runs, it reaches into the host where only an admin may deploy:\n{}",
                    what.join("\n")
                ),
            ));
        }
    }
    let replicas = place.deployer.target.observe(&app).await?;
    let Some(found) = replicas
        .iter()
        .find(|r| r.service == service && r.replica == replica)
    else {
        let mut have: Vec<String> = replicas
            .iter()
            .map(|r| format!("{} {}", r.service, r.replica))
            .collect();
        have.sort();
        return Err(ApiError::new(
            Code::NotFound,
            format!(
                "app {app} has no replica {replica} of service {service:?} (it has: {})",
                if have.is_empty() {
                    "none".to_owned()
                } else {
                    have.join(", ")
                }
            ),
        ));
    };
    if found.state != "running" {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "{} is {}: start it first (capstan start {app} {service} --replica {replica})",
                found.name, found.state
            ),
        ));
    }
    let started = state
        .engine
        .exec(&found.id, &cmd, tty, size)
        .await
        .map_err(|e| {
            ApiError::new(
                Code::Failed,
                format!("cannot run {:?} in {}: {e}", cmd[0], found.name),
            )
        })?;
    let (engine, name, who) = (
        state.engine.clone(),
        found.name.clone(),
        who.map_or_else(|| "admin".to_owned(), |w| w.0.name),
    );
    tracing::info!(app, service, replica, who, command = ?cmd, tty, "exec started");
    Ok(ws
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| async move {
            let code = pump(&engine, started, socket).await;
            tracing::info!(container = name, who, exit = ?code, "exec ended");
        }))
}

/// Carries the exec's bytes both ways until it ends, then says its exit code.
async fn pump(
    engine: &capstan_engine::Engine,
    exec: capstan_engine::Exec,
    socket: WebSocket,
) -> Option<i64> {
    let (id, tty) = (exec.id.clone(), exec.tty);
    let (mut from_exec, mut to_exec) = tokio::io::split(exec.io);
    let (mut out, mut inbound) = socket.split();
    let output = async {
        let mut buf = vec![0_u8; 16 * 1024];
        let mut frames = BytesMut::new();
        loop {
            let n = match from_exec.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok::<_, axum::Error>(()),
                Ok(n) => n,
            };
            if tty {
                out.send(Message::Binary(buf[..n].to_vec().into())).await?;
                continue;
            }
            frames.extend_from_slice(&buf[..n]);
            while let Some(frame) = capstan_engine::demux(&mut frames) {
                let mut message = Vec::with_capacity(frame.data.len() + 1);
                message.push(frame.stream);
                message.extend_from_slice(&frame.data);
                out.send(Message::Binary(message.into())).await?;
            }
        }
    };
    let input = async {
        while let Some(Ok(message)) = inbound.next().await {
            match message {
                Message::Binary(bytes) if to_exec.write_all(&bytes).await.is_err() => break,
                Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                    Ok(Control {
                        resize: Some((cols, rows)),
                        ..
                    }) if cols > 0 && rows > 0 => {
                        let _ = engine.exec_resize(&id, cols, rows).await;
                    }
                    Ok(Control { eof: true, .. }) => {
                        let _ = to_exec.shutdown().await;
                    }
                    _ => {}
                },
                Message::Close(_) => return true,
                _ => {}
            }
        }
        true
    };
    // the command's end ends the session; the client going away does too
    let went_away = tokio::select! {
        _ = output => false,
        gone = input => gone,
    };
    if went_away {
        return None;
    }
    // the engine says the code once the process is reaped: a moment after its output ends
    let mut code = None;
    for _ in 0..50 {
        match engine.exec_exit_code(&id).await {
            Ok(Some(c)) => {
                code = Some(c);
                break;
            }
            Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    let said = serde_json::json!({ "exit": code }).to_string();
    let mut socket = out;
    let _ = socket.send(Message::Text(said.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    code
}
