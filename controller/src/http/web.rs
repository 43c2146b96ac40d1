//! The browser client: the meeting page and the static files of it and of the portal,
//! self-contained and compiled in (no CDN, no build step). Served beside the JSON API,
//! which they call.
use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../../web/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A file of `controller/web/`, compiled in: its name, its content type, its text.
macro_rules! web_file {
    ($name:literal, $content_type:expr) => {
        (
            $name,
            $content_type,
            include_str!(concat!("../../web/", $name)),
        )
    };
}

/// Every static file, served at `/static/{name}`. The meeting page is ES modules that
/// import each other by these names, so a module missing here stops the whole page: a
/// new module gets its line here.
const STATIC: &[(&str, &str, &str)] = &[
    web_file!("style.css", CSS),
    web_file!("protocol.js", JS),
    web_file!("app.js", JS),
    web_file!("board.js", JS),
    web_file!("chat.js", JS),
    web_file!("cloud.js", JS),
    web_file!("dom.js", JS),
    web_file!("e2ee.js", JS),
    web_file!("grid.js", JS),
    web_file!("hosts.js", JS),
    web_file!("join.js", JS),
    web_file!("media.js", JS),
    web_file!("polls.js", JS),
    web_file!("recording.js", JS),
    web_file!("session.js", JS),
    web_file!("signal.js", JS),
    web_file!("state.js", JS),
    web_file!("portal.js", JS),
];

async fn page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn static_file(Path(name): Path<String>) -> Response {
    match STATIC.iter().find(|f| f.0 == name) {
        Some(&(_, content_type, body)) => {
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        None => {
            let name = crate::lengths::truncate(&name, 80);
            ApiError::NotFound(format!("no static file {name}")).into_response()
        }
    }
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/m/{id}", get(page))
        .route("/static/{name}", get(static_file))
}
