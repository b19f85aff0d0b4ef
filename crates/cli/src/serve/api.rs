//! The router and the handlers of every endpoint (`docs/SERVE_API.md`). Handlers parse
//! and check the request, then run the machine side on a blocking thread with the
//! session's machine locked.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::frames::{self, FramePlane};
use super::replay::{LoadOptions, ReplayState, MAX_TRACE};
use super::session::{EventStream, Machine, Session, ALL_VIEWS};
use super::{views, ApiError, App};
use crate::shell::{boot_summary, MAX_SCRIPT_LINE};
use crate::MachineArgs;

/// The largest JSON body.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

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

/// The machine flags a session asks for, each parsed by the command line's own parser,
/// over the server's defaults.
pub fn machine_args(
    defaults: &MachineArgs,
    body: &Map<String, Value>,
) -> Result<MachineArgs, ApiError> {
    let mut argv: Vec<String> = Vec::new();
    let text = |key: &str, v: &Value| -> Result<String, ApiError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(ApiError::bad_request(format!(
                "'{key}' must be a string or a number"
            ))),
        }
    };
    for (key, v) in body {
        let flag = format!("--{}", key.replace('_', "-"));
        match key.as_str() {
            "ram" | "cpus" | "profile" | "seed" | "swiotlb" | "swiotlb_below" | "kmalloc_sizes" => {
                if !v.is_null() {
                    argv.push(format!("{flag}={}", text(key, v)?));
                }
            }
            "pci_hole" | "no_legacy_hole" | "init_on_alloc" | "init_on_free" => match v {
                Value::Bool(true) => argv.push(flag),
                Value::Bool(false) => {}
                _ => return Err(ApiError::bad_request(format!("'{key}' must be true or false"))),
            },
            "slab_debug" => match v {
                Value::Null => {}
                Value::String(s) if s.is_empty() => argv.push(flag),
                Value::String(s) => argv.push(format!("{flag}={s}")),
                _ => return Err(ApiError::bad_request("'slab_debug' must be a string of letters")),
            },
            "holes" => {
                let list = v.as_array().ok_or_else(|| {
                    ApiError::bad_request("'holes' must be a list of START-END strings")
                })?;
                for h in list {
                    argv.push(format!("--hole={}", text("holes", h)?));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown machine option '{}' (have: ram, cpus, profile, seed, holes, pci_hole, no_legacy_hole, slab_debug, init_on_alloc, init_on_free, swiotlb, swiotlb_below, kmalloc_sizes)",
                    other.chars().take(64).collect::<String>()
                )))
            }
        }
    }
    let parsed = MachineArgs::parse_from(argv.iter().map(String::as_str)).map_err(|e| {
        ApiError::bad_request(
            e.lines()
                .next()
                .unwrap_or("bad machine option")
                .replace("error: ", ""),
        )
    })?;
    let mut m = defaults.clone();
    // `"slab_debug": null` asks for none; any other null keeps the server's default.
    m.overlay(parsed, |k| match k {
        "slab_debug" => body.contains_key(k),
        _ => body.get(k).is_some_and(|v| !v.is_null()),
    });
    Ok(m)
}

async fn create_session(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let options: Option<Map<String, Value>> = json_body(&headers, body, true)?;
    let args = machine_args(&app.config().defaults, &options.unwrap_or_default())?;
    let app2 = app.clone();
    let session = tokio::task::spawn_blocking(move || app2.create(args))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let m = session.lock();
    let (machine, summary) = match boot_summary(&m.shell.machine) {
        crate::shell::Value::Object(o, t) => (o, t),
        _ => (Value::Null, String::new()),
    };
    let body = json!({"id": session.id, "generation": 0, "machine": machine, "summary": summary});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn session_info(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (generation, v) = with_machine(&app, &id, |session, m| {
        let machine = match boot_summary(&m.shell.machine) {
            crate::shell::Value::Object(o, _) => o,
            _ => Value::Null,
        };
        Ok((
            session.generation(),
            json!({
                "id": session.id, "generation": session.generation(),
                "halted": m.shell.machine.halted(), "tainted": m.shell.machine.tainted().0,
                "prompt": m.shell.prompt(), "machine": machine, "lines": m.lines,
                "replay": m.replay.as_ref().map(ReplayState::summary),
            }),
        ))
    })
    .await?;
    Ok(with_generation(generation, Json(v)))
}

async fn delete_session(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    line: String,
}

#[derive(Deserialize, Default)]
struct CommandQuery {
    touched: Option<String>,
}

/// The name of the command on `line` (after `!` and `name =`), if any.
fn command_name(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    let line = line.strip_prefix('!').unwrap_or(line).trim();
    let command = match line.split_once('=') {
        Some((name, rest))
            if !name.trim().is_empty()
                && name
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            rest
        }
        _ => line,
    };
    command.split_whitespace().next()
}

/// What a command may have changed, as the source of its `change` event: `reboot` for a
/// new machine; `command` for one the command table says changes the machine, one that
/// fills a TLB (`read`), or one that reported to the console, oopsed or panicked; `None`
/// for a command that only looked.
fn change_source(line: &str, outcome: &crate::shell::Outcome) -> Option<&'static str> {
    let name = command_name(line);
    if name == Some("reboot") && !outcome.failed() {
        return Some("reboot");
    }
    let mutates = name
        .and_then(crate::commands::find)
        .is_some_and(|c| c.mutates);
    let noticed = outcome.oops.is_some() || outcome.halted || !outcome.kernel.is_empty();
    (mutates || name == Some("read") || noticed).then_some("command")
}

/// The views a command that changed the machine may have changed, from what the command
/// does: one that only sets CPU state (interrupts, preemption) changes `cpus`; one of the
/// page or slab allocator cannot create or free vmalloc areas, so `vmalloc` is left out.
/// Anything else, a reboot, or a command the kernel reported about (its lines, an oops, a
/// panic) may have changed every view.
fn views_changed(line: &str, outcome: &crate::shell::Outcome) -> Vec<&'static str> {
    let noticed = outcome.oops.is_some() || outcome.halted || !outcome.kernel.is_empty();
    if noticed {
        return ALL_VIEWS.to_vec();
    }
    match command_name(line).unwrap_or_default() {
        "local_irq_disable" | "local_irq_enable" | "preempt_disable" | "preempt_enable" => {
            vec!["cpus"]
        }
        "alloc_pages" | "__free_pages" | "__get_free_pages" | "get_zeroed_page" | "free_pages"
        | "kmalloc" | "kzalloc" | "kcalloc" | "krealloc" | "kfree" | "kmem_cache_alloc"
        | "kmem_cache_free" | "kmem_cache_shrink" | "drain_all_pages" => {
            ALL_VIEWS.into_iter().filter(|&v| v != "vmalloc").collect()
        }
        _ => ALL_VIEWS.to_vec(),
    }
}

async fn command(
    State(app): Shared,
    Path(id): Path<String>,
    Query(q): Query<CommandQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CommandBody = json_body(&headers, body, false)?
        .ok_or_else(|| ApiError::bad_request("the body must be {\"line\": \"...\"}"))?;
    if body.line.len() > MAX_SCRIPT_LINE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the line is longer than {} KiB (the limit for a script line)",
                MAX_SCRIPT_LINE >> 10
            ),
        ));
    }
    if body.line.contains(['\n', '\r']) {
        return Err(ApiError::bad_request(
            "one line at a time: the line has a line break",
        ));
    }
    let envelope = q
        .touched
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true");
    let line = body.line;
    let (generation, v) = with_machine(&app, &id, move |session, m| {
        m.lines += 1;
        let n = m.lines;
        let Some(outcome) = m.shell.exec_line(n, &line) else {
            return Ok((session.generation(), Value::Null));
        };
        m.dmesg.extend(outcome.kernel.iter().cloned());
        let object = outcome.json();
        let generation = if let Some(source) = change_source(&line, &outcome) {
            let views = views_changed(&line, &outcome);
            session.changed(
                source,
                json!({"line": n, "console": outcome.kernel, "changed": views}),
                m,
            )
        } else {
            session.console(&outcome.kernel, m);
            session.generation()
        };
        if !envelope {
            return Ok((generation, object));
        }
        let touched = touched(m, &outcome);
        Ok((
            generation,
            json!({"outcome": object, "generation": generation, "touched": touched}),
        ))
    })
    .await?;
    Ok(with_generation(generation, Json(v)))
}

/// The frames behind every address a command named or returned ([`views::frames_of`]).
fn touched(m: &Machine, outcome: &crate::shell::Outcome) -> Vec<Value> {
    let mut candidates: Vec<u64> = Vec::new();
    if let Ok(crate::shell::Value::Number(n, _) | crate::shell::Value::Address(n, _)) =
        &outcome.result
    {
        candidates.push(*n);
    }
    for word in outcome.command.split_whitespace().skip(1) {
        if let Some(v) = m.shell.var(word) {
            candidates.push(v);
        } else if let Ok(v) = views::parse_address(word) {
            candidates.push(v);
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    let mm = m.shell.machine.mm();
    candidates
        .into_iter()
        .filter(|&x| x >= 1 << 20)
        .take(16)
        .flat_map(|x| {
            views::frames_of(mm, x).into_iter().map(move |(pfn, pages, what)| {
                json!({"addr": crate::output::addr(x), "pfn": pfn, "pages": pages, "what": what})
            })
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct DmesgQuery {
    since: Option<u64>,
}

async fn dmesg(
    State(app): Shared,
    Path(id): Path<String>,
    Query(q): Query<DmesgQuery>,
) -> Result<Response, ApiError> {
    view(&app, &id, move |m| {
        m.drain_console();
        Ok(m.dmesg.since(q.since.unwrap_or(0)))
    })
    .await
}

async fn events(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let session = app.get(&id)?;
    let hello = with_machine(&app, &id, |session, m| {
        Ok(json!({
            "generation": session.generation(), "halted": m.shell.machine.halted(),
            "tainted": m.shell.machine.tainted().0, "dmesg_next": m.dmesg.next(),
        }))
    })
    .await?;
    let stream = session.subscribe();
    let first = Event::default().event("hello").data(hello.to_string());
    let state = (Some(first), stream, false);
    let s = futures_util::stream::unfold(
        state,
        |(first, mut stream, done): (Option<Event>, EventStream, bool)| async move {
            if let Some(e) = first {
                return Some((Ok(e), (None, stream, false)));
            }
            if done {
                return None;
            }
            match stream.receiver.recv().await {
                Ok(text) => {
                    let (name, data) = text.split_once('\n').unwrap_or(("change", "{}"));
                    let last = name == "gone";
                    Some((
                        Ok(Event::default().event(name).data(data)),
                        (None, stream, last),
                    ))
                }
                Err(RecvError::Lagged(_)) => {
                    let generation = stream.session.generation();
                    let e = Event::default()
                        .event("resync")
                        .data(json!({"generation": generation}).to_string());
                    Some((Ok(e), (None, stream, false)))
                }
                Err(RecvError::Closed) => None,
            }
        },
    );
    Ok(Sse::new(s).keep_alive(KeepAlive::new().text("keep-alive")))
}

async fn proc_file(
    State(app): Shared,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (generation, text) = with_machine(&app, &id, move |session, m| {
        let text = views::proc_file(m, &file)?;
        Ok((session.generation(), text))
    })
    .await?;
    Ok(with_generation(
        generation,
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text),
    ))
}

#[derive(Deserialize, Default)]
struct FramesQuery {
    planes: Option<String>,
    from: Option<u64>,
    count: Option<u64>,
}

async fn frames_view(
    State(app): Shared,
    Path(id): Path<String>,
    Query(q): Query<FramesQuery>,
) -> Result<Response, ApiError> {
    let planes = q
        .planes
        .as_deref()
        .unwrap_or("state")
        .split(',')
        .map(|p| {
            FramePlane::from_name(p.trim()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "'{}' is not a plane (state, cache, migratetype)",
                    p.chars().take(32).collect::<String>()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if planes.len() > 8 {
        return Err(ApiError::bad_request("at most 8 planes"));
    }
    let (generation, bytes) = with_machine(&app, &id, move |session, m| {
        let dma = m.shell.dma_ranges();
        let map = frames::compute(&m.shell.machine, &dma);
        let generation = session.generation();
        let bytes = frames::encode_frames(
            m.shell.machine.mm(),
            &map,
            &planes,
            q.from.unwrap_or(0),
            q.count.unwrap_or(u64::MAX),
            generation,
        );
        Ok((generation, bytes))
    })
    .await?;
    Ok(with_generation(
        generation,
        ([(header::CONTENT_TYPE, "application/octet-stream")], bytes),
    ))
}

async fn frames_meta(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let session = app.get(&id)?;
    let generation = session.generation();
    view(&app, &id, move |m| Ok(views::frames_meta(m, generation))).await
}

async fn zones(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::zones(m))).await
}

async fn slabs(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::slabs(m))).await
}

#[derive(Deserialize, Default)]
struct SlabQuery {
    detail: Option<usize>,
}

async fn slab_detail(
    State(app): Shared,
    Path((id, cache)): Path<(String, String)>,
    Query(q): Query<SlabQuery>,
) -> Result<Response, ApiError> {
    let detail = q.detail.unwrap_or(64).min(1024);
    view(&app, &id, move |m| views::slab_detail(m, &cache, detail)).await
}

async fn slab_object(
    State(app): Shared,
    Path((id, cache, at)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let at = views::parse_address(&at)?;
    view(&app, &id, move |m| views::slab_object(m, &cache, at)).await
}

async fn vmalloc(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::vmalloc(m))).await
}

async fn vmalloc_area(
    State(app): Shared,
    Path((id, at)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let at = views::parse_address(&at)?;
    view(&app, &id, move |m| views::vmalloc_area(m, at)).await
}

async fn walk(
    State(app): Shared,
    Path((id, at)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let at = views::parse_address(&at)?;
    view(&app, &id, move |m| Ok(views::walk(m, at))).await
}

async fn cpus(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::cpus(m))).await
}

async fn info(
    State(app): Shared,
    Path((id, x)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    view(&app, &id, move |m| views::info(m, &x)).await
}

/// Every object with a `pfns` list in the tour's facts, as highlights.
fn highlights(prefix: &str, v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            if let Some(pfns) = map.get("pfns").and_then(Value::as_array) {
                let pfns: Vec<u64> = pfns.iter().filter_map(Value::as_u64).collect();
                let mut start = 0;
                while start < pfns.len() {
                    let mut end = start + 1;
                    while end < pfns.len() && pfns[end] == pfns[end - 1] + 1 {
                        end += 1;
                    }
                    out.push(json!({"pfn": pfns[start], "pages": end - start, "what": prefix}));
                    start = end;
                }
            }
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                highlights(&p, child, out);
            }
        }
        Value::Array(list) => list.iter().for_each(|c| highlights(prefix, c, out)),
        _ => {}
    }
}

async fn tour(
    State(app): Shared,
    Path((id, claim)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !crate::tour::claim_ids().contains(&claim.as_str()) {
        return Err(ApiError::bad_request(format!(
            "no claim '{}' (have: {})",
            claim.chars().take(16).collect::<String>(),
            crate::tour::claim_ids().join(", ")
        )));
    }
    let (generation, v) = with_machine(&app, &id, move |session, m| {
        if m.shell.machine.halted() {
            return Err(ApiError::conflict(
                "the machine has panicked; 'reboot' boots a fresh one with the same flags",
            ));
        }
        let run = crate::tour::run_claim(&m.shell.machine, &session.args, &claim)
            .ok_or_else(|| ApiError::bad_request("no such claim"))?;
        // The experiment's kernel lines (those its text quotes, too) belong to the
        // session's dmesg; run_claim took its oopses, so the next command starts clean.
        m.dmesg.extend(run.kernel.iter().cloned());
        let lines = run.kernel.clone();
        let oopsed = run.oopses > 0;
        let generation = session.changed(
            "tour",
            json!({"claim": claim, "console": lines, "oopsed": oopsed}),
            m,
        );
        let mut marks = Vec::new();
        highlights("", &Value::Object(run.facts.clone()), &mut marks);
        let this = run
            .claims
            .iter()
            .find(|c| c["id"] == claim.as_str())
            .cloned()
            .unwrap_or(Value::Null);
        Ok((
            generation,
            json!({
                "claim": this, "section_claims": run.claims, "text": run.text,
                "facts": run.facts, "invariants_broken": run.broken,
                "highlight": marks, "generation": generation,
                "console": run.kernel, "oopsed": oopsed, "oopses": run.oopses,
                "tainted": m.shell.machine.tainted().0,
            }),
        ))
    })
    .await?;
    Ok(with_generation(generation, Json(v)))
}

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
struct ReplayQuery {
    lenient: Option<String>,
    no_page_replay: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "1" || v == "true")
}

async fn replay_load(
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

async fn replay_forget(State(app): Shared, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
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

async fn replay_seek(
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

async fn replay_series(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    view(&app, &id, |m| {
        m.replay
            .as_ref()
            .map(ReplayState::series)
            .ok_or_else(|| ApiError::conflict("no trace is loaded"))
    })
    .await
}

#[derive(Deserialize, Default)]
struct ReportQuery {
    json: Option<String>,
}

async fn replay_report(
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
