//! The router and the handlers of every endpoint (`docs/SERVE_API.md`). Handlers parse
//! and check the request, then run the machine side on a blocking thread with the
//! session's machine locked.
//!
//! Where things are: this file holds the route table ([`ROUTES`], [`router`]), the
//! fallbacks, the helpers every handler shares (`with_machine`, `view`, `json_body`,
//! `with_generation`) and the server-wide endpoints (OpenAPI, limits, commands, samples);
//! `sessions.rs` creating, reading and deleting sessions, running shell commands and tour
//! claims, dmesg and the event stream; `inspect.rs` the read-only views of a machine
//! (`/proc`, frames, zones, slabs, vmalloc, walks, CPUs, info); `replay.rs` loading,
//! seeking and reporting a trace replay. Start at [`router`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::replay::MAX_TRACE;
use super::session::{Machine, Session};
use super::{ApiError, App};
use crate::shell::MAX_SCRIPT_LINE;

mod inspect;
mod replay;
mod sessions;

use inspect::{
    cpus, frames_meta, frames_view, info, proc_file, slab_detail, slab_object, slabs, vmalloc,
    vmalloc_area, walk, zones,
};
use replay::{replay_forget, replay_load, replay_report, replay_seek, replay_series};
pub use sessions::machine_args;
use sessions::{command, create_session, delete_session, dmesg, events, session_info, tour};

/// The largest JSON body.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route of the API: method and path (axum's `{param}` syntax), as the OpenAPI
/// document lists them (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/openapi.json"),
    ("get", "/api/limits"),
    ("get", "/api/commands"),
    ("get", "/api/samples"),
    ("post", "/api/sessions"),
    ("get", "/api/sessions/{id}"),
    ("delete", "/api/sessions/{id}"),
    ("post", "/api/sessions/{id}/commands"),
    ("get", "/api/sessions/{id}/dmesg"),
    ("get", "/api/sessions/{id}/events"),
    ("get", "/api/sessions/{id}/proc/{file}"),
    ("get", "/api/sessions/{id}/frames"),
    ("get", "/api/sessions/{id}/frames/meta"),
    ("get", "/api/sessions/{id}/zones"),
    ("get", "/api/sessions/{id}/slabs"),
    ("get", "/api/sessions/{id}/slabs/{cache}"),
    ("get", "/api/sessions/{id}/slabs/{cache}/objects/{addr}"),
    ("get", "/api/sessions/{id}/vmalloc"),
    ("get", "/api/sessions/{id}/vmalloc/{addr}"),
    ("get", "/api/sessions/{id}/walk/{addr}"),
    ("get", "/api/sessions/{id}/cpus"),
    ("get", "/api/sessions/{id}/info/{x}"),
    ("post", "/api/sessions/{id}/tour/{claim}"),
    ("post", "/api/sessions/{id}/replay"),
    ("delete", "/api/sessions/{id}/replay"),
    ("post", "/api/sessions/{id}/replay/seek"),
    ("get", "/api/sessions/{id}/replay/series"),
    ("get", "/api/sessions/{id}/replay/report"),
];

type Shared = State<Arc<App>>;

/// The whole server: the API, the embedded page, and the Host/Origin guard.
pub fn router(app: Arc<App>) -> Router {
    let s = "/api/sessions/{id}";
    let api = Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/limits", get(limits))
        .route("/api/commands", get(command_table))
        .route("/api/samples", get(samples))
        .route("/api/sessions", post(create_session))
        .route(s, get(session_info).delete(delete_session))
        .route(&format!("{s}/commands"), post(command))
        .route(&format!("{s}/dmesg"), get(dmesg))
        .route(&format!("{s}/events"), get(events))
        .route(&format!("{s}/proc/{{*file}}"), get(proc_file))
        .route(&format!("{s}/frames"), get(frames_view))
        .route(&format!("{s}/frames/meta"), get(frames_meta))
        .route(&format!("{s}/zones"), get(zones))
        .route(&format!("{s}/slabs"), get(slabs))
        .route(&format!("{s}/slabs/{{cache}}"), get(slab_detail))
        .route(
            &format!("{s}/slabs/{{cache}}/objects/{{addr}}"),
            get(slab_object),
        )
        .route(&format!("{s}/vmalloc"), get(vmalloc))
        .route(&format!("{s}/vmalloc/{{addr}}"), get(vmalloc_area))
        .route(&format!("{s}/walk/{{addr}}"), get(walk))
        .route(&format!("{s}/cpus"), get(cpus))
        .route(&format!("{s}/info/{{x}}"), get(info))
        .route(&format!("{s}/tour/{{claim}}"), post(tour))
        .route(&format!("{s}/replay/seek"), post(replay_seek))
        .route(&format!("{s}/replay/series"), get(replay_series))
        .route(&format!("{s}/replay/report"), get(replay_report))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .route(
            &format!("{s}/replay"),
            post(replay_load)
                .layer(axum::middleware::from_fn_with_state(
                    app.clone(),
                    one_upload_at_a_time,
                ))
                .delete(replay_forget)
                .layer(DefaultBodyLimit::max(MAX_TRACE)),
        );
    api.fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            super::guard::check,
        ))
        .with_state(app)
}

/// At most [`super::session::UPLOADS`] traces are read at once (each may be 256 MiB in
/// memory); another gets `429`.
async fn one_upload_at_a_time(
    State(app): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match app.uploads.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "other traces are being loaded now; try again when they are done",
        )
        .into_response(),
    }
}

async fn fallback(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") || method != axum::http::Method::GET {
        return ApiError::not_found(format!("no such endpoint: {method} {}", uri.path()))
            .into_response();
    }
    super::assets::serve(uri).await
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}

/// A response with the session's generation in `X-Kmemlab-Generation`.
fn with_generation(generation: u64, response: impl IntoResponse) -> Response {
    let mut r = response.into_response();
    if let Ok(v) = HeaderValue::from_str(&generation.to_string()) {
        r.headers_mut().insert("x-kmemlab-generation", v);
    }
    r
}

/// Run `f` with the session's machine locked, on a blocking thread.
async fn with_machine<T: Send + 'static>(
    app: &App,
    id: &str,
    f: impl FnOnce(&Arc<Session>, &mut Machine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let session = app.get(id)?;
    tokio::task::spawn_blocking(move || {
        let mut m = session.lock();
        f(&session, &mut m)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's thread failed: {e}"),
        )
    })?
}

/// A read-only JSON view, with the generation header; console lines it provoked go to
/// dmesg and to the event stream.
async fn view(
    app: &App,
    id: &str,
    f: impl FnOnce(&mut Machine) -> Result<Value, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let (generation, v) = with_machine(app, id, move |session, m| {
        let v = f(m)?;
        let lines = m.drain_console();
        session.console(&lines, m);
        Ok((session.generation(), v))
    })
    .await?;
    Ok(with_generation(generation, Json(v)))
}

/// The body as JSON of type `T`; `None` for an empty body when `optional`.
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    optional: bool,
) -> Result<Option<T>, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) && optional {
        return Ok(None);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| {
        ApiError::bad_request(format!("the body is not valid JSON for this request: {e}"))
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn limits(State(app): Shared) -> Json<Value> {
    let c = app.config();
    Json(json!({
        "max_sessions": c.max_sessions, "sessions": app.session_count(),
        "session_ram": c.session_ram, "idle_timeout_secs": c.idle_timeout.as_secs(),
        "max_line": MAX_SCRIPT_LINE, "max_json_body": MAX_JSON_BODY, "max_trace": MAX_TRACE,
    }))
}

async fn command_table() -> Json<Value> {
    let rows: Vec<Value> = crate::commands::all()
        .map(|c| json!({"name": c.name, "usage": c.usage, "help": c.help, "mutates": c.mutates}))
        .collect();
    Json(json!(rows))
}

async fn samples(State(app): Shared) -> Json<Value> {
    let rows: Vec<Value> = app
        .config()
        .samples
        .iter()
        .map(|s| json!({"name": s.name, "bytes": s.bytes.len()}))
        .collect();
    Json(json!(rows))
}
