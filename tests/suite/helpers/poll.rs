//! Waiting for something that happens in the background: a condition asked again and again
//! until it holds or a deadline passes, never a fixed sleep followed by a look.

use std::future::Future;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(50);

/// Asks `check` until it answers `Some` (that answer) or `within` has passed (`None`).
pub async fn poll<T, F>(within: Duration, mut check: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// `poll`, failing the test with `what` when the deadline passes.
pub async fn eventually<T, F>(what: &str, within: Duration, check: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    poll(within, check)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {within:?}"))
}

/// `poll` for a test's own thread, outside the runtime.
pub fn poll_blocking<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(INTERVAL);
    }
}
