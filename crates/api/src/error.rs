use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_model::{ErrorBody, ErrorDetail};

/// The kinds of API failure, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 400: a parameter or body is wrong.
    BadRequest,
    /// 401: missing or wrong token.
    Unauthorized,
    /// 403: the token's role may not do this.
    Forbidden,
    /// 404: no such object or route.
    NotFound,
    /// 409: the object is busy (a deploy of the app is running).
    Conflict,
    /// 422: the engine could not do what was asked (a build step failed).
    Failed,
    /// 503: the Docker engine cannot be reached.
    EngineUnavailable,
    /// 500: a fault inside capstan (details are logged, not sent).
    Internal,
}

impl Code {
    fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Failed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::EngineUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Failed => "failed",
            Self::EngineUnavailable => "engine_unavailable",
            Self::Internal => "internal",
        }
    }
}

/// The one error type of every handler.
#[derive(Debug)]
pub struct ApiError {
    code: Code,
    message: String,
}

impl ApiError {
    /// An error with a message for the client.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        self.code.status()
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
            ReleaseError::Unusable(m) => Self::new(Code::BadRequest, m),
            e @ ReleaseError::Model(_) => Self::new(Code::Internal, e.to_string()),
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
                tracing::warn!(error = %e, "engine request failed");
                Self::new(Code::Internal, format!("engine request failed: {e}"))
            }
        }
    }
}

impl From<capstan_engine::Error> for ApiError {
    fn from(err: capstan_engine::Error) -> Self {
        if err.is_unreachable() {
            Self::new(Code::EngineUnavailable, err.to_string())
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
                code: self.code.as_str().to_owned(),
                message: self.message,
            },
        };
        (self.code.status(), Json(body)).into_response()
    }
}
