//! The ops endpoints every binary serves: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive) and `/readyz` (it should get traffic), kept apart so that an
//! etcd outage makes nodes unready without making them look dead.
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Answers whether the process is ready, and if not, why.
pub type ReadinessFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

pub fn router(registry: Registry, ready: ReadinessFn) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let r = ready();
                async move {
                    match r {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let mut buf = Vec::new();
                let enc = TextEncoder::new();
                let res = enc.encode(&registry.gather(), &mut buf);
                async move {
                    match res {
                        Ok(()) => ([(header::CONTENT_TYPE, enc.format_type().to_owned())], buf)
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        )
}

/// A registry whose every metric carries the `node` and `region` labels (DESIGN §10).
pub fn registry(node: &str, region: &str) -> Registry {
    let labels = [
        ("node".to_string(), node.to_string()),
        ("region".to_string(), region.to_string()),
    ];
    // Only fails for an invalid prefix, and we pass none.
    Registry::new_custom(None, Some(labels.into_iter().collect())).expect("prometheus registry")
}
