//! What every answer carries and how long a client may take: the security headers, and the
//! stall timeout of request bodies (actix's own `client_request_timeout` covers only the
//! request head, so a client announcing 1,000 bytes and sending 9 would hold a connection
//! and a worker for as long as it likes).

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web;
use futures_util::StreamExt;

use crate::web::state::AppState;

/// No script at all, styles and images from the server only, no framing, forms post back to
/// the server only. No page needs inline script or style, so none is allowed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Two years, as the HSTS preload list asks.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains";

/// The headers added to every answer that does not set its own. `Cache-Control: no-store`
/// is the default because nearly every page and API answer holds personal or governed data
/// (customers, members, audits, the trail, data-subject exports); only the stylesheet sets a
/// cache lifetime of its own. HSTS only with `--cookie-secure` (served behind TLS).
pub fn security_headers(tls: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cache-Control", "no-store"));
    if tls {
        headers.add(("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY))
    } else {
        headers
    }
}

/// The error a stalled body ends with; `is_stalled` recognises it.
#[derive(Debug)]
struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled: no data for {} seconds",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for Stalled {}

/// Whether a payload error is the stall timeout (answered 408).
pub fn is_stalled(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.get_ref().is_some_and(|i| i.is::<Stalled>()))
}

/// Middleware: the request body fails with a stall error when no byte arrives for the
/// configured time (FAIRSEG_BODY_TIMEOUT_SECONDS); extractors and uploads then answer 408
/// and the connection is closed.
pub async fn body_timeout(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.body_timeout)
        .unwrap_or(Duration::from_secs(30));
    let (_, payload) = req.parts_mut();
    let inner = std::mem::replace(payload, Payload::None);
    if !matches!(inner, Payload::None) {
        let stream = futures_util::stream::unfold(Some(inner), move |state| async move {
            let mut inner = state?;
            match actix_web::rt::time::timeout(limit, inner.next()).await {
                Ok(Some(item)) => Some((item, Some(inner))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        Stalled(limit),
                    ))),
                    None,
                )),
            }
        });
        // Fused: multipart parsing polls again after the end.
        req.set_payload(Payload::Stream {
            payload: Box::pin(stream.fuse()),
        });
    }
    next.call(req).await
}
