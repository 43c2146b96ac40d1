//! The browser client: the page and its static files, self-contained and compiled in (no
//! CDN, no build step). Served beside the JSON API, which it calls.
use axum::Router;
use axum::http::header;
use axum::response::Html;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const E2EE_JS: &str = include_str!("../../web/e2ee.js");

async fn page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/m/{id}", get(page))
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/static/e2ee.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    E2EE_JS,
                )
            }),
        )
        .route(
            "/static/style.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    STYLE_CSS,
                )
            }),
        )
}
