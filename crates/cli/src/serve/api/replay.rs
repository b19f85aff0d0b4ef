//! The replay endpoints: load a trace (uploaded or a sample) into a session, forget it,
//! seek to an event, and read its time series and its `perf kmem stat` report. Start at
//! `replay_load`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{json_body, view, with_generation, with_machine, Shared};
use crate::serve::replay::{LoadOptions, ReplayState};
use crate::serve::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleBody {
    sample: String,
    #[serde(default)]
    lenient: bool,
    #[serde(default)]
    no_page_replay: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct ReplayQuery {
    lenient: Option<String>,
    no_page_replay: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "1" || v == "true")
}

pub(super) async fn replay_load(
    State(app): Shared,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (name, bytes, options) = if is_json {
        let b: SampleBody = json_body(&headers, body, false)?
            .ok_or_else(|| ApiError::bad_request("the body must be {\"sample\": \"...\"}"))?;
        let sample = app
            .config()
            .samples
            .iter()
            .find(|s| s.name == b.sample)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no sample '{}'",
                    b.sample.chars().take(64).collect::<String>()
                ))
            })?;
        let o = LoadOptions {
            lenient: b.lenient,
            no_page_replay: b.no_page_replay,
        };
        (sample.name.clone(), sample.bytes.clone(), o)
    } else {
        let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        if body.is_empty() {
            return Err(ApiError::bad_request("the trace is empty"));
        }
        let o = LoadOptions {
            lenient: truthy(&q.lenient),
            no_page_replay: truthy(&q.no_page_replay),
        };
        ("upload".to_string(), Arc::from(&body[..]), o)
    };
    let (generation, v) = with_machine(&app, &id, move |session, m| {
        let state = ReplayState::load(name, bytes, &session.args, options)
            .map_err(ApiError::bad_request)?;
        let last_words = m.shell.reboot().map(|_| ()).map_err(ApiError::bad_request);
        last_words?;
        let lines = m.drain_console();
        let summary = state.summary();
        m.replay = Some(state);
        let generation = session.changed("replay", json!({"console": lines, "position": 0}), m);
        let mut v = summary;
        v["generation"] = json!(generation);
        Ok((generation, v))
    })
    .await?;
    Ok(with_generation(generation, Json(v)))
}

pub(super) async fn replay_forget(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_machine(&app, &id, |_, m| {
        m.replay
            .take()
            .map(drop)
            .ok_or_else(|| ApiError::conflict("no trace is loaded"))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekBody {
    event: u64,
}

pub(super) async fn replay_seek(
    State(app): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let seek: SeekBody = json_body(&headers, body, false)?
        .ok_or_else(|| ApiError::bad_request("the body must be {\"event\": N}"))?;
    let (generation, v) = with_machine(&app, &id, move |session, m| {
        let mut state = m
            .replay
            .take()
            .ok_or_else(|| ApiError::conflict("no trace is loaded (POST …/replay first)"))?;
        let result = m
            .shell
            .reboot()
            .and_then(|_| state.replay_prefix(&m.shell.machine, seek.event));
        let events = state.events;
        m.replay = Some(state);
        let position = result.map_err(ApiError::bad_request)?;
        let lines = m.drain_console();
        let generation =
            session.changed("replay", json!({"console": lines, "position": position}), m);
        Ok((
            generation,
            json!({"position": position, "events": events, "generation": generation}),
        ))
    })
    .await?;
    Ok(with_generation(generation, Json(v)))
}

pub(super) async fn replay_series(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    view(&app, &id, |m| {
        m.replay
            .as_ref()
            .map(ReplayState::series)
            .ok_or_else(|| ApiError::conflict("no trace is loaded"))
    })
    .await
}

#[derive(Deserialize, Default)]
pub(super) struct ReportQuery {
    json: Option<String>,
}

pub(super) async fn replay_report(
    State(app): Shared,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let as_json = truthy(&q.json);
    let text = with_machine(&app, &id, move |_, m| {
        let state = m
            .replay
            .as_ref()
            .ok_or_else(|| ApiError::conflict("no trace is loaded"))?;
        if as_json {
            serde_json::to_string_pretty(&state.report)
                .map(|t| t + "\n")
                .map_err(|e| ApiError::bad_request(e.to_string()))
        } else {
            Ok(state.report.to_text(20))
        }
    })
    .await?;
    let ct = if as_json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, ct)], text).into_response())
}
