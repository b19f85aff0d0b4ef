//! `kmemlab serve`'s costs: computing and encoding the frames of a 4 GiB machine (the
//! issue's budget: 50 ms, one byte per page), and a command's round trip through the
//! router (request parsing, the session's lock, the blocking thread, the shell, JSON).
//!
//! `cargo bench -p kmemlab --bench serve`

use axum::body::Body;
use axum::http::{header, Request};
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use kmemlab_cli::serve::{router, App, Config};
use kmemlab_cli::MachineArgs;
use tower::ServiceExt;

fn frames_of_a_4g_machine(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let app = App::new(Config::new(
        MachineArgs::parse_from(["--ram=4G", "--cpus=4"]).expect("flags"),
    ));
    let r = router(app);
    let id = rt.block_on(async {
        let resp = r
            .clone()
            .oneshot(
                Request::post("/api/sessions")
                    .header(header::HOST, "127.0.0.1:7878")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        v["id"].as_str().expect("id").to_string()
    });
    // Some state to classify: slabs, page blocks, a vmalloc area, and 3 GiB of page cache
    // (order-0 pages one by one: the worst case for the map, no free block to skip).
    let run = |line: &str| {
        let r = r.clone();
        let path = format!("/api/sessions/{id}/commands");
        let body = serde_json::json!({ "line": line }).to_string();
        async move {
            let resp = r
                .oneshot(
                    Request::post(path)
                        .header(header::HOST, "127.0.0.1:7878")
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("answer");
            resp.into_body().collect().await.expect("body").to_bytes()
        }
    };
    rt.block_on(async {
        for i in 0..200 {
            run(&format!("k{i} = kmalloc {} GFP_KERNEL", 8 << (i % 10))).await;
        }
        run("p = alloc_pages GFP_KERNEL 4").await;
        run("v = vmalloc 1M").await;
        run("pagecache 3G").await;
    });
    let frames = format!("/api/sessions/{id}/frames");
    c.bench_function("frames of a 4 GiB machine (compute + encode + HTTP)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = r
                    .clone()
                    .oneshot(
                        Request::get(&frames)
                            .header(header::HOST, "127.0.0.1:7878")
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("answer");
                let bytes = resp.into_body().collect().await.expect("body").to_bytes();
                let pages = u64::from_le_bytes(bytes[16..24].try_into().expect("header"));
                assert_eq!(bytes.len() as u64, 40 + pages, "one byte per page");
                bytes.len()
            })
        })
    });
    c.bench_function(
        "command round trip (ksize, router + session + shell)",
        |b| b.iter(|| rt.block_on(run("ksize k1"))),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = frames_of_a_4g_machine
}
criterion_main!(benches);
