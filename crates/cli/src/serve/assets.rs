//! The page: every file under `crates/cli/web/`, embedded in the binary at compile time
//! (so the server needs nothing beside it and works offline).

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::ApiError;

/// `crates/cli/web/`.
#[derive(Embed)]
#[folder = "web/"]
struct Web;

/// `GET /` is `index.html`; any other path a file of `web/` with its content type.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Web::get(path) {
        Some(file) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_string()),
                (header::CACHE_CONTROL, "no-cache".to_string()),
            ],
            file.data.into_owned(),
        )
            .into_response(),
        None => ApiError::not_found(format!("no such file: /{path}")).into_response(),
    }
}

/// The embedded files' paths (for tests and the OpenAPI check).
pub fn files() -> Vec<String> {
    Web::iter().map(|p| p.into_owned()).collect()
}
