//! A webhook receiver of the test's own: it keeps what each POST carried and answers as told.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

/// What a receiver was sent, and whether it said yes.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    pub accepted: bool,
}

#[derive(Default)]
pub struct Receiver {
    pub seen: Mutex<Vec<Received>>,
    /// Answers to give before saying yes again (status, Retry-After).
    pub refuse: Mutex<Vec<(StatusCode, Option<&'static str>)>>,
}

impl Receiver {
    pub fn accepted(&self) -> Vec<Received> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter().filter(|r| r.accepted).cloned().collect()
    }

    pub fn tries(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// A local HTTP receiver of JSON POSTs at `/hook`: its URL, and what it was sent.
pub async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let shared = Arc::clone(&state);
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move {
                let body: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let refusal = {
                    let mut refuse = state
                        .refuse
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    (!refuse.is_empty()).then(|| refuse.remove(0))
                };
                state
                    .seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Received {
                        headers,
                        body,
                        accepted: refusal.is_none(),
                    });
                match refusal {
                    Some((status, Some(retry))) => {
                        (status, [("retry-after", retry)], "later").into_response()
                    }
                    Some((status, None)) => (status, "no").into_response(),
                    None => (StatusCode::OK, "ok").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, state)
}
