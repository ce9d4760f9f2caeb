//! The web layer's one error type, mapped to HTTP here and nowhere else: a status, a stable
//! code and a message, as `{"error":{"code","message"}}` for the API and as the error page for
//! the browser (see `access::render_html_errors`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::accounts::AccountError;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    InvalidInput {
        field: Option<String>,
        message: String,
    },
    #[error("sign in to continue")]
    Unauthenticated,
    #[error("{0}")]
    SessionEnded(String),
    #[error("{0}")]
    BadCredentials(String),
    #[error("your role does not allow this (it needs the `{0}` permission)")]
    Forbidden(String),
    #[error("the form has expired or did not come from fairseg; reload the page and try again")]
    Csrf,
    #[error("there is nothing at this address")]
    NotFound,
    /// Something named in the request does not exist (404, with a message saying what).
    #[error("{0}")]
    Missing(String),
    #[error("this address does not accept that method")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is too large (the limit is {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    /// The request body stalled longer than the body timeout (408; the connection closes).
    #[error("the request took too long: no data arrived for a while; send it again")]
    RequestTimeout,
    #[error("too many failed sign-ins; try again in {retry_after_seconds} seconds")]
    TooManyRequests { retry_after_seconds: u64 },
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// Every turn was taken for longer than the queue's patience (503 with Retry-After).
    #[error("the server is busy; try again in {retry_after_seconds} seconds")]
    Busy { retry_after_seconds: u64 },
    #[error("something went wrong on our side; the error has been logged")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
        AppError::InvalidInput {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> AppError {
        AppError::Internal(e.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidInput { .. } => "invalid_input",
            AppError::Unauthenticated => "unauthenticated",
            AppError::SessionEnded(_) => "session_ended",
            AppError::BadCredentials(_) => "bad_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::Csrf => "csrf",
            AppError::NotFound | AppError::Missing(_) => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::RequestTimeout => "request_timeout",
            AppError::TooManyRequests { .. } => "too_many_requests",
            AppError::Unavailable(_) => "unavailable",
            AppError::Busy { .. } => "busy",
            AppError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::InvalidInput { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `invalid_input` or `forbidden`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated | AppError::SessionEnded(_) | AppError::BadCredentials(_) => {
                StatusCode::UNAUTHORIZED
            }
            AppError::Forbidden(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::NotFound | AppError::Missing(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(e) = self {
            tracing::error!(error = ?e, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let AppError::TooManyRequests {
            retry_after_seconds,
        }
        | AppError::Busy {
            retry_after_seconds,
        } = self
        {
            response.insert_header(("Retry-After", retry_after_seconds.to_string()));
        }
        if matches!(self, AppError::RequestTimeout) {
            // What is left of the body may still come; the connection cannot be reused.
            response.force_close();
        }
        if matches!(self, AppError::Unauthenticated | AppError::SessionEnded(_)) {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"fairseg\""));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
                field: self.field().map(str::to_string),
            },
        })
    }
}

impl AppError {
    /// A failed read of the request body: the stall timeout is 408, anything else is a bad
    /// request naming `field`.
    pub fn from_payload(field: &str, e: &actix_web::error::PayloadError) -> AppError {
        if super::hardening::is_stalled(e) {
            AppError::RequestTimeout
        } else {
            AppError::invalid(field, format!("the upload broke off: {e}"))
        }
    }

    /// The same for a multipart upload.
    pub fn from_multipart(field: &str, e: &actix_multipart::MultipartError) -> AppError {
        match e {
            actix_multipart::MultipartError::Payload(p) => AppError::from_payload(field, p),
            other => AppError::invalid(field, format!("the upload cannot be read: {other}")),
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        match e {
            DbError::Pool(_) | DbError::Connect(_) => {
                AppError::Unavailable("the database does not answer".into())
            }
            other => AppError::internal(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> AppError {
        AppError::internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> AppError {
        match e {
            AccountError::InvalidEmail(m) => AppError::invalid("email", m),
            AccountError::WeakPassword(m) => AppError::invalid("password", m),
            e @ AccountError::UnknownRole { .. } => AppError::invalid("role", e.to_string()),
            e @ AccountError::Duplicate(_) => AppError::Conflict(e.to_string()),
            e @ AccountError::BadCredentials => AppError::BadCredentials(e.to_string()),
            e @ AccountError::WrongCurrentPassword => {
                AppError::invalid("current_password", e.to_string())
            }
            AccountError::NotFound => AppError::NotFound,
            e @ AccountError::LastAdmin => AppError::Conflict(e.to_string()),
            e @ AccountError::SessionEnded => AppError::SessionEnded(e.to_string()),
            AccountError::Db(db) => db.into(),
        }
    }
}

/// Runs blocking work (diesel, argon2) off the async workers.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, AppError>
where
    T: Send + 'static,
    E: Into<AppError> + Send + 'static,
{
    actix_web::web::block(f).await?.map_err(Into::into)
}
