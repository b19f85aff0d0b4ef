//! The session endpoints: create (with [`machine_args`], the machine flags a session asks
//! for), read and delete a session, run a shell command (and say which views it changed),
//! run a tour claim, read dmesg, and the server-sent event stream. Start at `command`.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{json_body, view, with_generation, with_machine, Shared};
use crate::serve::replay::ReplayState;
use crate::serve::session::{EventStream, Machine, ALL_VIEWS};
use crate::serve::{views, ApiError};
use crate::shell::{boot_summary, MAX_SCRIPT_LINE};
use crate::MachineArgs;

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
            "ram" | "cpus" | "profile" | "seed" | "swiotlb" | "swiotlb_below" | "kmalloc_sizes"
            | "slab_percpu" => {
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
                    "unknown machine option '{}' (have: ram, cpus, profile, seed, holes, pci_hole, no_legacy_hole, slab_debug, init_on_alloc, init_on_free, swiotlb, swiotlb_below, kmalloc_sizes, slab_percpu)",
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

pub(super) async fn create_session(
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

pub(super) async fn session_info(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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

pub(super) async fn delete_session(
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
pub(super) struct CommandQuery {
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
        "alloc_pages"
        | "__free_pages"
        | "__get_free_pages"
        | "get_zeroed_page"
        | "free_pages"
        | "kmalloc"
        | "kzalloc"
        | "kcalloc"
        | "krealloc"
        | "kfree"
        | "kmem_cache_alloc"
        | "kmem_cache_free"
        | "kmem_cache_shrink"
        | "drain_all_pages"
        | "alloc_pages_bulk"
        | "kmem_cache_alloc_bulk"
        | "kmem_cache_free_bulk"
        | "kfree_bulk" => ALL_VIEWS.into_iter().filter(|&v| v != "vmalloc").collect(),
        _ => ALL_VIEWS.to_vec(),
    }
}

pub(super) async fn command(
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
    match &outcome.result {
        Ok(crate::shell::Value::Number(n, _) | crate::shell::Value::Address(n, _)) => {
            candidates.push(*n);
        }
        Ok(crate::shell::Value::Addresses(list, _)) => candidates.extend_from_slice(list),
        _ => {}
    }
    for word in outcome.command.split_whitespace().skip(1) {
        if let Some(v) = m.shell.var(word.strip_prefix('$').unwrap_or(word)) {
            candidates.push(v);
        } else if let Some(list) = m.shell.list(word) {
            candidates.extend_from_slice(list);
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
            views::frames_of(&mm, x).into_iter().map(move |(pfn, pages, what)| {
                json!({"addr": crate::output::addr(x), "pfn": pfn, "pages": pages, "what": what})
            })
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub(super) struct DmesgQuery {
    since: Option<u64>,
}

pub(super) async fn dmesg(
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

pub(super) async fn events(
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

pub(super) async fn tour(
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
