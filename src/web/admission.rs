//! Admission: at most N requests are worked on at once; the others wait their turn in the order
//! they arrived, and one that waits too long is answered 503 with `Retry-After`.
//!
//! Why a queue of our own: without it every request in flight competes for the database pool
//! and the cores at once. r2d2 hands a freed connection to whichever thread gets there first
//! (a request arriving now can take it ahead of one that has waited), and a page borrows a
//! connection several times, so under load a view could queue behind requests that came after
//! it, again and again: with 64 clients on two cores the 99th percentile was 2.8 × the median.
//! tokio's semaphore is fair (first come, first served), so the wait is the queue ahead and no
//! more, and the few requests admitted are not slowed by dozens of threads sharing the cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tokio::sync::Semaphore;

use super::error::AppError;
use crate::web::state::AppState;

/// What a refused read is told: try again in this many seconds.
const RETRY_AFTER_SECONDS: u64 = 5;

/// The queue in front of the handlers.
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    patience: Duration,
    waiting: AtomicUsize,
}

impl Admission {
    /// `limit` requests at once; a request waiting longer than `patience` is refused.
    pub fn new(limit: usize, patience: Duration) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            patience,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Reads worked on at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Reads waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

/// One read counted as waiting until it is dropped: when its turn comes, when it is refused,
/// or when the client goes away while it waits (its future is dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn of(admission: &'a Admission) -> Waiting<'a> {
        admission.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(&admission.waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The health check, the metrics and the two static files answer without waiting: a load
/// balancer must be able to tell a busy server from a dead one, monitoring must see the queue
/// when it is full, and a page's stylesheet must not queue behind the page.
///
/// Only reads wait: a state-changing request may carry an upload whose body arrives as slowly
/// as the client likes, and must not hold a turn meanwhile (four slow uploads would stop every
/// dashboard); they are few, and each is one user's deliberate action.
fn waits(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && path != "/healthz"
        && path != "/metrics"
        && !path.starts_with("/static/")
}

/// Middleware: waits for a turn, then serves the request holding it until the answer's head is
/// ready (a streamed body goes on without it).
pub async fn queue(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !waits(req.method(), req.path()) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let admission = &state.admission;
    let turn = tokio::time::timeout(
        admission.patience,
        admission.permits.clone().acquire_owned(),
    );
    let waiting = Waiting::of(admission);
    let turn = turn.await;
    drop(waiting);
    let permit = match turn {
        Ok(Ok(permit)) => permit,
        // Timed out, or the semaphore was closed (never: nothing closes it).
        _ => {
            tracing::warn!(
                path = req.path(),
                waited_seconds = admission.patience.as_secs(),
                "refused a request that waited too long for its turn"
            );
            state.metrics.reads_refused.inc();
            let error = AppError::Busy {
                retry_after_seconds: RETRY_AFTER_SECONDS,
            };
            // A page gets the error page, the API the JSON error; both say when to retry.
            let mut response = super::access::error_response(req, error, None);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            return Ok(response);
        }
    };
    let response = next.call(req).await;
    drop(permit);
    Ok(response?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_admitted_in_the_order_they_arrived() {
        let admission = Arc::new(Admission::new(1, Duration::from_secs(5)));
        let first = admission.permits.clone().acquire_owned().await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..5 {
            let (admission, order) = (admission.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = admission.permits.clone().acquire_owned().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            // The waiter runs up to its place in the queue before the next one is spawned.
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.in_flight(), 1);
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn reads_wait_but_not_the_health_check_static_files_or_uploads() {
        assert!(!waits(&Method::GET, "/healthz"));
        assert!(!waits(&Method::GET, "/metrics"));
        assert!(!waits(&Method::GET, "/static/app.css"));
        assert!(!waits(&Method::POST, "/customers/import"));
        assert!(waits(&Method::GET, "/segments"));
        assert!(waits(&Method::HEAD, "/kpi"));
        assert!(waits(&Method::GET, "/api/v1/audits"));
    }
}
