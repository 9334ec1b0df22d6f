//! The API's errors and the one place that turns them into HTTP answers.
//!
//! Every error body carries the seed's `detail` string and a structured
//! `error` with a stable machine code:
//!
//! ```json
//! {"detail": "Database not found.",
//!  "error": {"code": "DATABASE_NOT_FOUND", "message": "Database not found.", "status": 404, "details": {}}}
//! ```

use dbforge_protocol::{ErrorCode, WireError};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::pool::OpenError;
use crate::runtime::RuntimeError;
use crate::session::SessionError;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The path names a database with a name outside the rule.
    #[error("{0}")]
    InvalidName(String),
    /// A data-plane request for a database that does not exist.
    #[error("Database not found.")]
    DatabaseNotFound,
    /// An admin request for a database with no instance.
    #[error("Database instance not found.")]
    InstanceNotFound,
    /// No route has this path.
    #[error("Not found.")]
    RouteNotFound,
    /// No open transaction has this id on this database (never begun,
    /// committed, rolled back, or expired).
    #[error("Transaction not found (it may have been committed, rolled back or expired).")]
    TransactionNotFound,
    /// The database has its maximum of open transactions.
    #[error("Too many open transactions on this database ({0}); retry shortly.")]
    TooManyTransactions(usize),
    /// The route exists, with other methods.
    #[error("Method not allowed.")]
    MethodNotAllowed {
        /// The methods the route takes, for the `Allow` header.
        allow: &'static str,
    },
    /// The body is not JSON.
    #[error("Malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON of the wrong shape.
    #[error("{0}")]
    Validation(String),
    /// The request is well-formed but asks for something impossible (the
    /// seed answers these with a 400, e.g. an empty `rows`).
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the limit.
    #[error("Request body is larger than {limit} bytes.")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The worker refused or failed the statement.
    #[error("SQL Error: {}", .0.message)]
    Sql(WireError),
    /// Every in-flight slot of the gateway is taken.
    #[error("The gateway is overloaded; retry shortly.")]
    Overloaded,
    /// No session slot of the database came free in time.
    #[error("Timed out waiting for a session of this database; retry shortly.")]
    PoolTimeout,
    /// The session died under the request; it may or may not have run.
    #[error("The database's worker session was lost ({0}); retry shortly.")]
    SessionLost(String),
    /// The worker did not answer in time.
    #[error("The database's worker did not answer in time; retry shortly.")]
    WorkerTimeout,
    /// Docker cannot be reached.
    #[error("Docker is unavailable: {0}")]
    DockerUnavailable(String),
    /// Docker answered with an error.
    #[error("Docker error: {0}")]
    Docker(String),
    /// The gateway is shutting down.
    #[error("The gateway is shutting down.")]
    ShuttingDown,
}

/// The HTTP face of an error.
pub struct ErrorParts {
    /// Status code.
    pub status: StatusCode,
    /// Stable code in `error.code`.
    pub code: &'static str,
    /// Whether to send `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// The one mapping to HTTP; exhaustive, so a new error forces a choice.
    pub fn parts(&self) -> ErrorParts {
        use StatusCode as S;
        let (status, code, retry) = match self {
            ApiError::InvalidName(_) => (S::BAD_REQUEST, "INVALID_NAME", false),
            ApiError::DatabaseNotFound => (S::NOT_FOUND, "DATABASE_NOT_FOUND", false),
            ApiError::InstanceNotFound => (S::NOT_FOUND, "INSTANCE_NOT_FOUND", false),
            ApiError::RouteNotFound => (S::NOT_FOUND, "NOT_FOUND", false),
            ApiError::TransactionNotFound => (S::NOT_FOUND, "TRANSACTION_NOT_FOUND", false),
            ApiError::TooManyTransactions(_) => {
                (S::TOO_MANY_REQUESTS, "TOO_MANY_TRANSACTIONS", true)
            }
            ApiError::MethodNotAllowed { .. } => {
                (S::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", false)
            }
            ApiError::MalformedJson(_) => (S::BAD_REQUEST, "MALFORMED_JSON", false),
            ApiError::Validation(_) => (S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", false),
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "BAD_REQUEST", false),
            ApiError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", false),
            ApiError::Sql(e) => {
                let (status, retry) = match e.code {
                    ErrorCode::SqlError
                    | ErrorCode::Constraint
                    | ErrorCode::Mismatch
                    | ErrorCode::Range
                    | ErrorCode::TooBig
                    | ErrorCode::Readonly
                    | ErrorCode::TooLarge
                    | ErrorCode::BadRequest => (S::BAD_REQUEST, false),
                    ErrorCode::Forbidden => (S::FORBIDDEN, false),
                    ErrorCode::Timeout => (S::GATEWAY_TIMEOUT, false),
                    ErrorCode::QuotaExceeded => (S::INSUFFICIENT_STORAGE, false),
                    ErrorCode::Busy | ErrorCode::Locked => (S::SERVICE_UNAVAILABLE, true),
                    ErrorCode::IoErr
                    | ErrorCode::Corrupt
                    | ErrorCode::CantOpen
                    | ErrorCode::NoMem
                    | ErrorCode::Misuse
                    | ErrorCode::Internal => (S::INTERNAL_SERVER_ERROR, false),
                };
                (status, e.code.as_str(), retry)
            }
            ApiError::Overloaded => (S::SERVICE_UNAVAILABLE, "OVERLOADED", true),
            ApiError::PoolTimeout => (S::SERVICE_UNAVAILABLE, "POOL_TIMEOUT", true),
            ApiError::SessionLost(_) => (S::SERVICE_UNAVAILABLE, "WORKER_UNAVAILABLE", true),
            ApiError::WorkerTimeout => (S::GATEWAY_TIMEOUT, "WORKER_TIMEOUT", false),
            ApiError::DockerUnavailable(_) => (S::SERVICE_UNAVAILABLE, "DOCKER_UNAVAILABLE", true),
            ApiError::Docker(_) => (S::BAD_GATEWAY, "DOCKER_ERROR", false),
            ApiError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "SHUTTING_DOWN", true),
        };
        ErrorParts {
            status,
            code,
            retry_after: retry.then_some(RETRY_AFTER_SECS),
        }
    }

    /// The JSON body: `detail` for the seed's clients, `error` for the rest.
    pub fn body(&self) -> Value {
        let parts = self.parts();
        let message = self.to_string();
        let details = match self {
            ApiError::Sql(e) => json!({ "sqlite_message": e.message }),
            ApiError::MethodNotAllowed { allow } => json!({ "allow": allow }),
            ApiError::BodyTooLarge { limit } => json!({ "limit_bytes": limit }),
            _ => json!({}),
        };
        json!({
            "detail": message,
            "error": {
                "code": parts.code,
                "message": message,
                "status": parts.status.as_u16(),
                "details": details,
            }
        })
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotFound => ApiError::DatabaseNotFound,
            RuntimeError::NotRunning => ApiError::SessionLost("container is not running".into()),
            RuntimeError::Unavailable(m) => ApiError::DockerUnavailable(m),
            RuntimeError::Failed(m) => ApiError::Docker(m),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Timeout(_) => ApiError::WorkerTimeout,
            SessionError::Lost(m) | SessionError::Protocol(m) => ApiError::SessionLost(m),
            SessionError::NotSent => ApiError::SessionLost("the session ended".into()),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Runtime(e) => e.into(),
            OpenError::Session(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_shapes() {
        let b = ApiError::DatabaseNotFound.body();
        assert_eq!(b["detail"], "Database not found.");
        assert_eq!(b["error"]["code"], "DATABASE_NOT_FOUND");
        assert_eq!(b["error"]["status"], 404);
        let b = ApiError::Sql(WireError::new(ErrorCode::SqlError, "no such table: x")).body();
        assert_eq!(b["detail"], "SQL Error: no such table: x");
        assert_eq!(b["error"]["code"], "SQL_ERROR");
        assert_eq!(b["error"]["status"], 400);
    }

    #[test]
    fn retryable_errors_say_when() {
        assert_eq!(ApiError::Overloaded.parts().retry_after, Some(1));
        assert_eq!(ApiError::Overloaded.parts().status, 503);
        assert_eq!(
            ApiError::SessionLost("x".into()).parts().retry_after,
            Some(1)
        );
        assert_eq!(ApiError::RouteNotFound.parts().retry_after, None);
    }
}
