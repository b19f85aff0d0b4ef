//! The read-only views of a session's machine: `/proc` files, the frame plane and its
//! legend, zones, slab caches and objects, vmalloc areas, page-table walks, CPUs, and
//! `info` on an address or PFN. Each runs `views` on the locked machine. Start at
//! `frames_view`.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;

use super::{view, with_generation, with_machine, Shared};
use crate::serve::frames::{self, FramePlane};
use crate::serve::{views, ApiError};

pub(super) async fn proc_file(
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
pub(super) struct FramesQuery {
    planes: Option<String>,
    from: Option<u64>,
    count: Option<u64>,
}

pub(super) async fn frames_view(
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
            &m.shell.machine.mm(),
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

pub(super) async fn frames_meta(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = app.get(&id)?;
    let generation = session.generation();
    view(&app, &id, move |m| Ok(views::frames_meta(m, generation))).await
}

pub(super) async fn zones(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::zones(m))).await
}

pub(super) async fn slabs(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::slabs(m))).await
}

#[derive(Deserialize, Default)]
pub(super) struct SlabQuery {
    detail: Option<usize>,
}

pub(super) async fn slab_detail(
    State(app): Shared,
    Path((id, cache)): Path<(String, String)>,
    Query(q): Query<SlabQuery>,
) -> Result<Response, ApiError> {
    let detail = q.detail.unwrap_or(64).min(1024);
    view(&app, &id, move |m| views::slab_detail(m, &cache, detail)).await
}

pub(super) async fn slab_object(
    State(app): Shared,
    Path((id, cache, at)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let at = views::parse_address(&at)?;
    view(&app, &id, move |m| views::slab_object(m, &cache, at)).await
}

pub(super) async fn vmalloc(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::vmalloc(m))).await
}

pub(super) async fn vmalloc_area(
    State(app): Shared,
    Path((id, at)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let at = views::parse_address(&at)?;
    view(&app, &id, move |m| views::vmalloc_area(m, at)).await
}

pub(super) async fn walk(
    State(app): Shared,
    Path((id, at)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let at = views::parse_address(&at)?;
    view(&app, &id, move |m| Ok(views::walk(m, at))).await
}

pub(super) async fn cpus(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    view(&app, &id, |m| Ok(views::cpus(m))).await
}

pub(super) async fn info(
    State(app): Shared,
    Path((id, x)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    view(&app, &id, move |m| views::info(m, &x)).await
}
