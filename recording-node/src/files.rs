//! Signed downloads of recording files: `GET /v1/files/{recording}/{file}?expires=…&sig=…`,
//! links the controller hands out (see `common::download`). Nothing else of the storage
//! is reachable: the names are checked, and only a recording's own directory is read.
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

pub struct Files {
    pub key: Vec<u8>,
    /// The storage directory of each classification.
    pub storage: Vec<PathBuf>,
}

#[derive(Deserialize)]
pub struct Link {
    expires: i64,
    sig: String,
}

/// A name of ours: letters, digits, '-', '_' and one '.' not at the start.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('.')
        && s.matches('.').count() <= 1
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (status, format!("{msg}\n")).into_response()
}

async fn download(
    State(f): State<Arc<Files>>,
    Path((recording, file)): Path<(String, String)>,
    link: Result<Query<Link>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(link)) = link else {
        return refuse(
            StatusCode::FORBIDDEN,
            "a download needs a signed link (expires, sig)",
        );
    };
    if let Err(e) = common::download::verify(
        &f.key,
        &recording,
        &file,
        link.expires,
        &link.sig,
        common::unix_ms() / 1000,
    ) {
        return refuse(StatusCode::FORBIDDEN, &e.to_string());
    }
    if common::ids::RecordingId::parse(&recording).is_err() || !plain_name(&file) {
        return refuse(StatusCode::NOT_FOUND, "no such file");
    }
    for dir in &f.storage {
        let path = dir.join(&recording).join(&file);
        let Ok(handle) = tokio::fs::File::open(&path).await else {
            continue;
        };
        let len = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some("ogg") => "audio/ogg",
            Some("mp4") => "video/mp4",
            Some("json") => "application/json",
            _ => "application/octet-stream",
        };
        let body = Body::from_stream(tokio_util::io::ReaderStream::new(handle));
        return (
            [
                (header::CONTENT_TYPE, kind.to_owned()),
                (header::CONTENT_LENGTH, len.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            body,
        )
            .into_response();
    }
    refuse(StatusCode::NOT_FOUND, "no such file")
}

pub fn router(files: Arc<Files>) -> Router {
    Router::new()
        .route("/v1/files/{recording}/{file}", get(download))
        .with_state(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_the_storage() {
        for ok in [
            "composite.mp4",
            "audio-Ada-p1-s2.ogg",
            "manifest.json",
            "ab12-cd34-ef56",
        ] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in [
            "", "..", "../x", "a/b", ".hidden", "a..b", "x.tar.gz", "a b", "é.ogg",
        ] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
