use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_model::{ErrorBody, ErrorDetail};

/// The kinds of API failure (capstan-model's, shared with the CLI).
pub use capstan_model::ErrorCode as Code;

/// The HTTP status each kind of failure answers with.
fn status(code: Code) -> StatusCode {
    match code {
        Code::BadRequest => StatusCode::BAD_REQUEST,
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::Forbidden => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Conflict => StatusCode::CONFLICT,
        Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Failed => StatusCode::UNPROCESSABLE_ENTITY,
        Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Code::EngineUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal | Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The one error type of every handler.
#[derive(Debug)]
pub struct ApiError {
    code: Code,
    message: String,
    /// Seconds to wait before trying again (`Retry-After`).
    retry_after: Option<u64>,
}

/// The longest error message answered, in bytes: one that quotes a 100 KB input is cut.
const MAX_MESSAGE: usize = 2048;

impl ApiError {
    /// An error with a message for the client.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // a message that quotes what was sent quotes a bounded part of it
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("… (cut)");
        }
        Self {
            code,
            message,
            retry_after: None,
        }
    }

    /// The same error, telling the client to try again in `seconds` (`Retry-After`).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        status(self.code)
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400 naming the parameter.
    pub fn bad_param(name: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(Code::BadRequest, format!("parameter {name:?}: {problem}"))
    }
}

impl From<capstan_store::Error> for ApiError {
    fn from(err: capstan_store::Error) -> Self {
        tracing::error!(error = %err, "state store failed while serving a request");
        Self::new(
            Code::Internal,
            "internal error; see the capstan daemon's log",
        )
    }
}

impl From<capstan_deploy::ReleaseError> for ApiError {
    fn from(err: capstan_deploy::ReleaseError) -> Self {
        use capstan_deploy::ReleaseError;
        match err {
            ReleaseError::Store(e) => e.into(),
            ReleaseError::Target(e) => e.into(),
            ReleaseError::NotFound(m) => Self::new(Code::NotFound, m),
            ReleaseError::BadScale(m) => Self::new(Code::BadRequest, m),
            e @ ReleaseError::Unusable { .. } => Self::new(Code::BadRequest, e.to_string()),
            e @ (ReleaseError::Model(_) | ReleaseError::Keep(_)) => {
                Self::new(Code::Internal, e.to_string())
            }
        }
    }
}

impl From<capstan_deploy::OperateError> for ApiError {
    fn from(err: capstan_deploy::OperateError) -> Self {
        use capstan_deploy::OperateError;
        match err {
            OperateError::NotFound(m) => Self::new(Code::NotFound, m),
            OperateError::Refused(m) => Self::new(Code::Conflict, m),
            e @ OperateError::NotBack { .. } => Self::new(Code::Failed, e.to_string()),
            OperateError::Target(e) => e.into(),
            OperateError::Store(e) => e.into(),
        }
    }
}

impl From<capstan_deploy::TargetError> for ApiError {
    fn from(err: capstan_deploy::TargetError) -> Self {
        use capstan_deploy::TargetError;
        match err {
            e @ TargetError::Unreachable { .. } => {
                Self::new(Code::EngineUnavailable, e.to_string())
            }
            TargetError::Refused(m) => Self::new(Code::BadRequest, m),
            e @ TargetError::Failed { .. } => {
                // an engine's or a cluster's: the error says which and what it refused
                tracing::warn!(error = %e, "a target's request failed");
                Self::new(Code::Internal, format!("the target refused or failed: {e}"))
            }
        }
    }
}

impl From<capstan_alerts::Error> for ApiError {
    /// A rule change refused (400 for a bad rule, 409 for one the API may not change) or not
    /// kept (500).
    fn from(e: capstan_alerts::Error) -> Self {
        let code = match &e {
            capstan_alerts::Error::Invalid(_) => Code::BadRequest,
            capstan_alerts::Error::NotPosted { .. } => Code::Conflict,
            capstan_alerts::Error::Unreadable { .. } | capstan_alerts::Error::Keep { .. } => {
                tracing::error!(error = %e, "cannot keep the alert rules");
                Code::Internal
            }
        };
        Self::new(code, e.to_string())
    }
}

impl From<capstan_engine::Error> for ApiError {
    fn from(err: capstan_engine::Error) -> Self {
        if err.is_unreachable() {
            Self::new(Code::EngineUnavailable, err.to_string())
        } else if let capstan_engine::Error::Api {
            status: status @ (400 | 404 | 409),
            message,
        } = &err
        {
            // what the engine refused was the caller's to fix (a malformed reference, a
            // missing object, a name in use), not capstan's
            let code = match status {
                400 => Code::BadRequest,
                404 => Code::NotFound,
                _ => Code::Conflict,
            };
            Self::new(code, format!("the engine refused: {message}"))
        } else if err.is_not_found() {
            Self::new(Code::NotFound, err.to_string())
        } else {
            tracing::warn!(error = %err, "engine request failed");
            Self::new(Code::Internal, format!("engine request failed: {err}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (status(self.code), Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
