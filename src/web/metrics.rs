//! Prometheus metrics: requests by route and status, latency, failed sign-ins.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::web::admission::Admission;
use crate::web::state::AppState;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub sign_in_failures: IntCounter,
    /// Reads refused with 503 for waiting too long for their turn.
    pub reads_refused: IntCounter,
    reads_in_flight: IntGauge,
    reads_waiting: IntGauge,
    reads_limit: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new_custom(Some("fairseg".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            ),
            &["route"],
        )
        .expect("valid metric");
        let sign_in_failures = IntCounter::new("sign_in_failures_total", "Failed sign-in attempts")
            .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        let reads_refused = IntCounter::new(
            "reads_refused_total",
            "Reads answered 503 for waiting longer than the queue's patience",
        )
        .expect("valid metric");
        let reads_in_flight =
            IntGauge::new("reads_in_flight", "Reads being worked on now").expect("valid metric");
        let reads_waiting = IntGauge::new("reads_waiting", "Reads waiting for their turn now")
            .expect("valid metric");
        let reads_limit =
            IntGauge::new("reads_limit", "Reads worked on at once at most").expect("valid metric");
        for metric in [
            Box::new(sign_in_failures.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reads_refused.clone()),
            Box::new(reads_in_flight.clone()),
            Box::new(reads_waiting.clone()),
            Box::new(reads_limit.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            sign_in_failures,
            reads_refused,
            reads_in_flight,
            reads_waiting,
            reads_limit,
        }
    }
}

impl Metrics {
    /// The metrics in Prometheus' text format, with the read queue as it is now.
    pub fn render(&self, admission: &Admission) -> String {
        self.reads_in_flight.set(admission.in_flight() as i64);
        self.reads_waiting.set(admission.waiting() as i64);
        self.reads_limit.set(admission.limit() as i64);
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

/// Records every request, labelled by route pattern (not raw path, which would let ids
/// explode the label set).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.call(req).await?;
    if let Some(state) = state {
        state
            .metrics
            .requests
            .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
            .inc();
        state
            .metrics
            .latency
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
