//! `kmemlab serve`'s HTTP API: every endpoint, every error path, the limits, sessions
//! side by side, and the promise that a command answers exactly as `kmemlab shell
//! --json` and a `/proc` file reads exactly as the shell's `cat`. Most requests go
//! through the router in-process (`tower::ServiceExt::oneshot`); one test uses a real
//! TCP socket. No assertion depends on time.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kmemlab_cli::serve::{router, App, Config, ROUTES};
use kmemlab_cli::MachineArgs;
use serde_json::{json, Value};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7878";
const FLAGS: [&str; 2] = ["--ram=64M", "--cpus=2"];

fn config() -> Config {
    Config::new(MachineArgs::parse_from(FLAGS).expect("flags"))
}

fn server(config: Config) -> (Arc<App>, Router) {
    let app = App::new(config);
    (app.clone(), router(app))
}

/// A response: status, headers, body.
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8")
    }
    /// An error reply: the status and `{"error": "..."}`.
    fn error(&self, status: StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        j["error"].as_str().expect("an error message").to_string()
    }
}

async fn send(r: &Router, req: Request<Body>) -> Reply {
    let resp = r.clone().oneshot(req).await.expect("the router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
}

async fn get(r: &Router, path: &str) -> Reply {
    send(r, request("GET", path).body(Body::empty()).unwrap()).await
}

async fn post_json(r: &Router, path: &str, body: &Value) -> Reply {
    let req = request("POST", path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(r, req).await
}

async fn new_session(r: &Router, options: Value) -> String {
    let reply = post_json(r, "/api/sessions", &options).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let id = reply.json()["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    id
}

async fn command(r: &Router, id: &str, line: &str) -> Value {
    let reply = post_json(
        r,
        &format!("/api/sessions/{id}/commands"),
        &json!({ "line": line }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// `kmemlab FLAGS shell [--json]` with `script` on standard input.
fn shell_output(script: &str, json: bool) -> String {
    shell_output_with(&[], script, json)
}

/// `kmemlab FLAGS EXTRA shell [--json]` with `script` on standard input.
fn shell_output_with(extra: &[&str], script: &str, json: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmemlab"));
    cmd.args(FLAGS).args(extra).arg("shell");
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kmemlab runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the script");
    let out = child.wait_with_output().expect("kmemlab ends");
    String::from_utf8(out.stdout).expect("utf-8")
}

const SCRIPT: &str = "\
# a comment line
a = kmalloc 100 GFP_KERNEL
p = alloc_pages GFP_KERNEL 2
v = vmalloc 64K
info a
ksize a

! alloc_pages GFP_KERNEL 11
kfree a
kfree a
no_such_command 1 2
vfree v
__free_pages p 2
cat /proc/buddyinfo
x = kzalloc 3000 GFP_KERNEL   # trailing comment
slab kmalloc-4k
";

#[tokio::test]
async fn a_command_answers_exactly_as_shell_json() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    let expected: Vec<Value> = shell_output(SCRIPT, true)
        .lines()
        .map(|l| serde_json::from_str(l).expect("shell --json prints JSON"))
        .collect();
    let mut got = Vec::new();
    for line in SCRIPT.lines() {
        let v = command(&r, &id, line).await;
        if !v.is_null() {
            got.push(v);
        }
    }
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    // The double free and the unknown command failed, as in the shell.
    assert!(got.iter().any(|v| v["failed"] == true && v["oops"] == true));
    let s = get(&r, &format!("/api/sessions/{id}")).await.json();
    assert_eq!(s["lines"], SCRIPT.lines().count());
}

const BULK_SCRIPT: &str = "\
c = kmem_cache_create demo 96
objs = kmem_cache_alloc_bulk c GFP_KERNEL 8
info $objs3
! kfree $objs
kmem_cache_free_bulk c $objs0 $objs1 $objs0
kmem_cache_free_bulk c $objs2 $objs3 $objs4 $objs5 $objs6 $objs7
pp = alloc_pages_bulk GFP_KERNEL 6
__free_pages $pp0 0
kmem_cache_alloc_bulk c GFP_KERNEL 3
! kmem_cache_alloc_bulk c GFP_KERNEL 0
";

/// The bulk commands' lists are JSON arrays of `"0x…"` strings through the API as in
/// `kmemlab shell --json`, and the frames a list names are the ones the command touched.
#[tokio::test]
async fn bulk_commands_answer_as_shell_json_and_touch_their_frames() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    let expected: Vec<Value> = shell_output(BULK_SCRIPT, true)
        .lines()
        .map(|l| serde_json::from_str(l).expect("shell --json prints JSON"))
        .collect();
    let mut got = Vec::new();
    for line in BULK_SCRIPT.lines() {
        got.push(command(&r, &id, line).await);
    }
    assert_eq!(got, expected);
    let objs = got[1]["result"].as_array().expect("a list");
    assert_eq!(objs.len(), 8);
    assert!(objs
        .iter()
        .all(|a| a.as_str().is_some_and(|a| a.starts_with("0x"))));
    // The double free inside the array was the kernel's BUG.
    assert_eq!(
        (got[4]["failed"].clone(), got[4]["oops"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(got[6]["result"].as_array().map(Vec::len), Some(6));

    // Every page of a bulk allocation is touched, each one frame.
    let s = format!("/api/sessions/{id}");
    let out = post_json(
        &r,
        &format!("{s}/commands?touched=1"),
        &json!({"line": "q = alloc_pages_bulk GFP_KERNEL 4"}),
    )
    .await
    .json();
    assert_eq!(out["outcome"]["ok"], true, "{out}");
    let mut pfns = Vec::new();
    for i in 0..4 {
        pfns.push(command(&r, &id, &format!("page_to_pfn $q{i}")).await["result"].clone());
    }
    let mut touched: Vec<Value> = out["touched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pfn"].clone())
        .collect();
    touched.sort_by_key(|p| p.as_u64());
    pfns.sort_by_key(|p| p.as_u64());
    assert_eq!(touched, pfns, "{out}");
    // A list named in a command touches its frames too.
    command(&r, &id, "few = kmem_cache_alloc_bulk c GFP_KERNEL 2").await;
    let out = post_json(
        &r,
        &format!("{s}/commands?touched=1"),
        &json!({"line": "kmem_cache_free_bulk c $few"}),
    )
    .await
    .json();
    assert_eq!(out["outcome"]["ok"], true, "{out}");
    let slab_pfn = command(&r, &id, "info $few0").await["result"]["slab_pfn"].clone();
    assert!(
        out["touched"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["pfn"] == slab_pfn),
        "{out}"
    );
}

#[tokio::test]
async fn proc_files_read_byte_for_byte_as_the_shells_cat() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    for file in kmemlab_mm::procfs::FILES {
        let shell = shell_output(&format!("cat /proc/{file}\n"), false);
        let reply = get(&r, &format!("/api/sessions/{id}/proc/{file}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{file}");
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(reply.text(), shell, "/proc/{file}");
    }
    let tainted = get(&r, &format!("/api/sessions/{id}/proc/sys/kernel/tainted")).await;
    assert_eq!(tainted.text(), "0\n");
    let missing = get(&r, &format!("/api/sessions/{id}/proc/nonesuch")).await;
    assert!(missing
        .error(StatusCode::NOT_FOUND)
        .contains("no such file"));
    let hostile = get(&r, &format!("/api/sessions/{id}/proc/meminfo%20%23x")).await;
    hostile.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sessions_are_created_listed_and_deleted() {
    let (app, r) = server(config());
    let id = new_session(
        &r,
        json!({"ram": "32M", "cpus": 1, "seed": 5, "slab_debug": "FZPU"}),
    )
    .await;
    let s = get(&r, &format!("/api/sessions/{id}")).await;
    assert_eq!(s.status, StatusCode::OK);
    let s = s.json();
    assert_eq!(s["machine"]["ram"], 32 << 20);
    assert_eq!(s["machine"]["cpus"], 1);
    assert_eq!(s["machine"]["seed"], 5);
    assert_eq!(s["halted"], false);
    assert_eq!(app.session_count(), 1);
    let other = new_session(&r, json!({})).await;
    assert_ne!(id, other);
    let del = send(
        &r,
        request("DELETE", &format!("/api/sessions/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    get(&r, &format!("/api/sessions/{id}"))
        .await
        .error(StatusCode::NOT_FOUND);
    // An empty body means the server's defaults.
    let empty = send(
        &r,
        request("POST", "/api/sessions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(empty.status, StatusCode::CREATED);
    assert_eq!(empty.json()["machine"]["ram"], 64 << 20);
}

/// `slab_percpu` picks the slab allocator's per-CPU layer as `--slab-percpu` does: a
/// session's /proc/slabinfo is the shell's with the same flag, and a back-to-back double
/// free, which the CPU slab's free path catches (6.6 `set_freepointer()`'s naive check),
/// goes through 6.18's `free_to_pcs()`, which has no such check.
#[tokio::test]
async fn slab_percpu_picks_the_per_cpu_layer() {
    let (_, r) = server(config());
    let sheaves = new_session(&r, json!({"slab_percpu": "sheaves"})).await;
    let cpu_slab = new_session(&r, json!({"slab_percpu": "cpu-slab"})).await;
    let default = new_session(&r, json!({"slab_percpu": null})).await;
    let slabinfo = |id: String| {
        let r = r.clone();
        async move {
            let reply = get(&r, &format!("/api/sessions/{id}/proc/slabinfo")).await;
            assert_eq!(reply.status, StatusCode::OK);
            reply.text()
        }
    };
    let (with_sheaves, with_cpu_slab, with_default) = (
        slabinfo(sheaves.clone()).await,
        slabinfo(cpu_slab.clone()).await,
        slabinfo(default).await,
    );
    let cat = "cat /proc/slabinfo\n";
    assert_eq!(
        with_sheaves,
        shell_output_with(&["--slab-percpu=sheaves"], cat, false)
    );
    assert_eq!(
        with_cpu_slab,
        shell_output_with(&["--slab-percpu=cpu-slab"], cat, false)
    );
    assert_eq!(
        with_default, with_cpu_slab,
        "null keeps the server's default"
    );
    // The sheaves and barns are kmalloc'd at boot and the sheaves hold objects, which
    // their slabs count as allocated: the kmalloc rows differ.
    assert_ne!(with_sheaves, with_cpu_slab);

    for (id, caught) in [(&sheaves, false), (&cpu_slab, true)] {
        command(&r, id, "r = kmalloc 300 GFP_KERNEL").await;
        command(&r, id, "kfree r").await;
        let v = command(&r, id, "kfree r").await;
        assert_eq!(v["failed"], caught, "{v}");
        assert_eq!(v["oops"], caught, "{v}");
    }

    let e = post_json(&r, "/api/sessions", &json!({"slab_percpu": "magazines"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(
        e.contains("'magazines' is not a per-CPU layer (cpu-slab or sheaves)"),
        "{e}"
    );
    let e = post_json(&r, "/api/sessions", &json!({"slab_percpu": true}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert_eq!(e, "'slab_percpu' must be a string or a number");

    // The options the server names when it refuses one are the OpenAPI document's.
    let e = post_json(&r, "/api/sessions", &json!({"bogus": 1}))
        .await
        .error(StatusCode::BAD_REQUEST);
    let mut named: Vec<&str> = e
        .split_once("(have: ")
        .and_then(|(_, list)| list.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no list of options in {e:?}"))
        .split(", ")
        .collect();
    let doc: Value = get(&r, "/api/openapi.json").await.json();
    let options = &doc["components"]["schemas"]["MachineOptions"]["properties"];
    let mut documented: Vec<&str> = options
        .as_object()
        .expect("MachineOptions")
        .keys()
        .map(String::as_str)
        .collect();
    named.sort();
    documented.sort();
    assert_eq!(named, documented);
    assert_eq!(
        options["slab_percpu"]["enum"],
        json!(["cpu-slab", "sheaves"])
    );
}

/// Every route answers (never the router's own 404 or 405) and appears in the OpenAPI
/// document, which lists nothing else.
#[tokio::test]
async fn every_route_answers_and_is_in_the_openapi_document() {
    let mut c = config();
    let trace = std::path::Path::new("../../tests/data/traces/linux-3.5-i386-boot-slub.trace");
    if trace.exists() {
        c.samples
            .push(kmemlab_cli::serve::Sample::load(trace).expect("sample"));
    }
    let (_, r) = server(c);
    let id = new_session(&r, json!({})).await;
    let a = command(&r, &id, "a = kmalloc 100 GFP_KERNEL").await["result"]
        .as_str()
        .unwrap()
        .to_string();
    let v = command(&r, &id, "v = vmalloc 16K").await["result"]
        .as_str()
        .unwrap()
        .to_string();
    let doc: Value = get(&r, "/api/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", &id)
            .replace("{file}", "meminfo")
            .replace("{cache}", "kmalloc-128")
            .replace("{addr}", if path.contains("slabs") { &a } else { &v })
            .replace("{x}", "a")
            .replace("{claim}", "Q3");
        let body = match (*method, *path) {
            ("post", "/api/sessions/{id}/commands") => json!({"line": "ksize a"}),
            ("post", "/api/sessions/{id}/replay/seek") => json!({"event": 0}),
            ("post", "/api/sessions/{id}/replay") => json!({"sample": "none"}),
            _ => json!({}),
        };
        if concrete.ends_with("/events") {
            continue; // a stream: checked in its own test
        }
        let req = request(&method.to_uppercase(), &concrete)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let reply = send(&r, req).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if reply.status == StatusCode::NOT_FOUND {
            let e = reply.json()["error"].as_str().unwrap().to_string();
            assert!(!e.starts_with("no such endpoint"), "{method} {path}: {e}");
        }
        assert!(
            reply.status.is_success()
                || [StatusCode::NOT_FOUND, StatusCode::CONFLICT].contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.text()
        );
    }
    // The page itself, and a file of it.
    let page = get(&r, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    for f in kmemlab_cli::serve::web_files() {
        assert_eq!(
            get(&r, &format!("/{f}")).await.status,
            StatusCode::OK,
            "{f}"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let mut c = config();
    c.max_sessions = 2;
    c.session_ram = 128 << 20;
    let (_, r) = server(c);
    let id = new_session(&r, json!({})).await;
    let cmd = format!("/api/sessions/{id}/commands");

    // Malformed JSON, wrong type, unknown field, wrong content type.
    let bad = send(
        &r,
        request("POST", &cmd)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"line\": "))
            .unwrap(),
    )
    .await;
    assert!(bad
        .error(StatusCode::BAD_REQUEST)
        .contains("not valid JSON"));
    post_json(&r, &cmd, &json!({"line": 5}))
        .await
        .error(StatusCode::BAD_REQUEST);
    post_json(&r, &cmd, &json!({"line": "help", "extra": 1}))
        .await
        .error(StatusCode::BAD_REQUEST);
    let text = send(
        &r,
        request("POST", &cmd)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{\"line\": \"help\"}"))
            .unwrap(),
    )
    .await;
    text.error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    post_json(&r, &cmd, &json!({"line": "help\nreboot"}))
        .await
        .error(StatusCode::BAD_REQUEST);

    // Too long a line, too big a body.
    let long = "x".repeat(64 * 1024 + 1);
    assert!(post_json(&r, &cmd, &json!({ "line": long }))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE)
        .contains("64 KiB"));
    let huge = json!({ "line": "y".repeat(2 << 20) });
    post_json(&r, &cmd, &huge)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown sessions, routes, methods.
    let unknown = "0123456789abcdef0123456789abcdef";
    post_json(
        &r,
        &format!("/api/sessions/{unknown}/commands"),
        &json!({"line": "help"}),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    get(&r, "/api/sessions/not-an-id/zones")
        .await
        .error(StatusCode::NOT_FOUND);
    get(&r, "/api/nonesuch").await.error(StatusCode::NOT_FOUND);
    send(
        &r,
        request("PUT", "/api/limits").body(Body::empty()).unwrap(),
    )
    .await
    .error(StatusCode::METHOD_NOT_ALLOWED);

    // Bad addresses, caches, claims, planes.
    let s = format!("/api/sessions/{id}");
    get(&r, &format!("{s}/walk/zzz"))
        .await
        .error(StatusCode::BAD_REQUEST);
    get(&r, &format!("{s}/vmalloc/0x10"))
        .await
        .error(StatusCode::NOT_FOUND);
    get(&r, &format!("{s}/slabs/nonesuch"))
        .await
        .error(StatusCode::NOT_FOUND);
    get(&r, &format!("{s}/slabs/kmalloc-64/objects/0x1000"))
        .await
        .error(StatusCode::NOT_FOUND);
    get(&r, &format!("{s}/info/pfn:99999999"))
        .await
        .error(StatusCode::BAD_REQUEST);
    get(&r, &format!("{s}/info/nobody"))
        .await
        .error(StatusCode::BAD_REQUEST);
    get(&r, &format!("{s}/frames?planes=colour"))
        .await
        .error(StatusCode::BAD_REQUEST);
    post_json(&r, &format!("{s}/tour/Z9"), &json!({}))
        .await
        .error(StatusCode::BAD_REQUEST);
    post_json(&r, &format!("{s}/replay/seek"), &json!({"event": 3}))
        .await
        .error(StatusCode::CONFLICT);
    get(&r, &format!("{s}/replay/report"))
        .await
        .error(StatusCode::CONFLICT);
    post_json(&r, &format!("{s}/replay"), &json!({"sample": "nonesuch"}))
        .await
        .error(StatusCode::NOT_FOUND);

    // Machine options: parsed as the command line parses them; RAM within the limit.
    assert!(post_json(&r, "/api/sessions", &json!({"ram": "lots"}))
        .await
        .error(StatusCode::BAD_REQUEST)
        .contains("not a size"));
    post_json(&r, "/api/sessions", &json!({"colour": "blue"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    post_json(&r, "/api/sessions", &json!({"pci_hole": "yes"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(post_json(&r, "/api/sessions", &json!({"ram": "1G"}))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY)
        .contains("--session-ram"));
    post_json(&r, "/api/sessions", &json!({"cpus": 0}))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY);

    // Too many sessions.
    new_session(&r, json!({})).await;
    assert!(post_json(&r, "/api/sessions", &json!({}))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS)
        .contains("--max-sessions"));
}

#[tokio::test]
async fn host_and_origin_are_checked() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    let cmd = format!("/api/sessions/{id}/commands");
    let with = |host: &str, origin: Option<&str>| {
        let mut b = Request::builder()
            .method("POST")
            .uri(&cmd)
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::from(r#"{"line": "help"}"#)).unwrap()
    };
    // DNS rebinding: a foreign name that resolves here.
    assert!(send(&r, with("evil.example:7878", None))
        .await
        .error(StatusCode::FORBIDDEN)
        .contains("Host"));
    send(&r, with("127.0.0.1:8080", None))
        .await
        .error(StatusCode::FORBIDDEN);
    let no_host = Request::builder()
        .uri("/api/limits")
        .body(Body::empty())
        .unwrap();
    send(&r, no_host).await.error(StatusCode::FORBIDDEN);
    // A cross-site POST.
    assert!(send(&r, with(HOST, Some("http://evil.example")))
        .await
        .error(StatusCode::FORBIDDEN)
        .contains("Origin"));
    let cross = request("DELETE", &format!("/api/sessions/{id}"))
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    send(&r, cross).await.error(StatusCode::FORBIDDEN);
    // The page's own origin, localhost, and no Origin (curl) are fine.
    assert_eq!(
        send(&r, with(HOST, Some("http://127.0.0.1:7878")))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&r, with("localhost:7878", Some("http://localhost:7878")))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(send(&r, with(HOST, None)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn views_show_what_commands_did() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({"slab_debug": "FZPU"})).await;
    let s = format!("/api/sessions/{id}");
    let frames = |r: Router, q: &'static str| {
        let s = s.clone();
        async move { get(&r, &format!("{s}/frames{q}")).await }
    };
    let before = frames(r.clone(), "").await;
    assert_eq!(before.status, StatusCode::OK);
    let b = &before.body;
    assert_eq!(&b[..4], b"KMLF");
    assert_eq!(b[4], 1);
    assert_eq!(b[5], 1);
    let pages = u64::from_le_bytes(b[16..24].try_into().unwrap());
    let meta = get(&r, &format!("{s}/frames/meta")).await.json();
    assert_eq!(pages, meta["max_pfn"].as_u64().unwrap());
    assert_eq!(b.len() as u64, 40 + pages);
    // Every page of RAM is classified (no `unknown`).
    assert!(!b[40..].contains(&0xFF));

    // A 4-page block: free before, allocated after, and touched.
    let out = post_json(
        &r,
        &format!("{s}/commands?touched=1"),
        &json!({"line": "p = alloc_pages GFP_KERNEL 2"}),
    )
    .await
    .json();
    assert_eq!(out["outcome"]["ok"], true);
    let t = &out["touched"][0];
    let pfn = t["pfn"].as_u64().unwrap() as usize;
    assert_eq!(t["pages"], 4);
    let after = frames(r.clone(), "").await;
    for p in pfn..pfn + 4 {
        assert!((0x10..=0x1A).contains(&before.body[40 + p]) || before.body[40 + p] == 0x20);
        assert_eq!(after.body[40 + p], 0x34, "pfn {p}");
    }
    let generation = after.headers["x-kmemlab-generation"].to_str().unwrap();
    assert_eq!(generation, "1");

    // A slab object: the slab's frames in the cache plane, the object in the cache view.
    let a = command(&r, &id, "a = kmalloc 100 GFP_KERNEL").await["result"]
        .as_str()
        .unwrap()
        .to_string();
    let info = get(&r, &format!("{s}/info/a")).await.json();
    let slab_pfn = info["result"]["slab_pfn"].as_u64().unwrap() as usize;
    let planes = frames(r.clone(), "?planes=state,cache,migratetype").await;
    let n = pages as usize;
    assert_eq!(planes.body[5], 3);
    assert_eq!(planes.body.len(), 40 + 3 * n);
    assert_eq!(planes.body[40 + slab_pfn], 0x30);
    let cache_index = planes.body[40 + n + slab_pfn] as usize - 1;
    assert_eq!(meta["caches"][cache_index], "kmalloc-128");
    assert!(planes.body[40 + 2 * n + slab_pfn] < 5);

    let cache = get(&r, &format!("{s}/slabs/kmalloc-128")).await.json();
    assert_eq!(cache["debug"], "FZPU");
    let kinds: Vec<&str> = cache["layout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"redzone") && kinds.contains(&"track"),
        "{kinds:?}"
    );
    let slabs: Vec<&Value> = ["cpu", "cpu_partial", "node_partial", "full"]
        .iter()
        .flat_map(|g| cache["groups"][g].as_array().unwrap())
        .collect();
    let ours = slabs
        .iter()
        .find(|sl| sl["pfn"] == slab_pfn as u64)
        .expect("the object's slab is listed");
    let letters = ours["objects_state"].as_str().unwrap();
    let index = info["result"]["index"].as_u64().unwrap() as usize;
    assert_eq!(&letters[index..=index], "a");
    assert!(
        letters.contains('p'),
        "free objects keep their poison: {letters}"
    );
    let object = get(&r, &format!("{s}/slabs/kmalloc-128/objects/{a}"))
        .await
        .json();
    assert_eq!(object["state"], "allocated");
    assert_eq!(object["alloc"]["caller"], "<stdin>:2");
    assert!(object["hex"].as_str().unwrap().contains(" cc cc"));

    // slabinfo rows carry slabinfo.c's loss.
    let rows = get(&r, &format!("{s}/slabs")).await.json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kmalloc-128")
        .unwrap();
    let total = (row["slabs"].as_u64().unwrap() * 4096) << row["order"].as_u64().unwrap();
    assert_eq!(row["total_bytes"], total);
    assert_eq!(
        row["loss"].as_u64().unwrap(),
        total - row["active_objs"].as_u64().unwrap() * 128
    );

    // vmalloc: the area, its train, its walk, which CPU's TLB holds it.
    let v = command(&r, &id, "v = vmalloc 32K").await["result"]
        .as_str()
        .unwrap()
        .to_string();
    command(&r, &id, "read v 0 8").await;
    let areas = get(&r, &format!("{s}/vmalloc")).await.json();
    let area = areas["areas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["start"] == v.as_str())
        .expect("the area");
    assert_eq!(area["state"], "busy");
    assert_eq!(area["guard"], 4096);
    let train = get(&r, &format!("{s}/vmalloc/{v}")).await.json();
    assert_eq!(train["pages"].as_array().unwrap().len(), 8);
    assert_eq!(
        train["runs"].as_array().unwrap().len() as u64,
        train["info"]["result"]["phys_runs"].as_u64().unwrap()
    );
    let after_v = frames(r.clone(), "").await;
    for p in train["pages"].as_array().unwrap() {
        assert_eq!(after_v.body[40 + p["pfn"].as_u64().unwrap() as usize], 0x32);
    }
    let walk = get(&r, &format!("{s}/walk/{v}")).await.json();
    assert_eq!(walk["steps"].as_array().unwrap().len(), 4);
    assert_eq!(walk["result"]["pfn"], train["pages"][0]["pfn"]);
    assert_eq!(walk["tlb"][0]["cached"], true);
    assert_eq!(walk["tlb"][1]["cached"], false);
    let table = walk["steps"][3]["table"].as_str().unwrap();
    let table_pfn = u64::from_str_radix(&table[2..], 16).unwrap() / 4096;
    assert_eq!(after_v.body[40 + table_pfn as usize], 0x42);

    // CPUs, zones, dmesg.
    command(&r, &id, "cpu 1").await;
    command(&r, &id, "local_irq_disable").await;
    let cpus = get(&r, &format!("{s}/cpus")).await.json();
    assert_eq!(cpus["current"], 1);
    assert_eq!(cpus["cpus"][1]["irqs_off"], true);
    assert!(
        cpus["cpus"][0]["tlb"]["occupancy"]["l1_4k"][0]
            .as_u64()
            .unwrap()
            > 0
    );
    let zones = get(&r, &format!("{s}/zones")).await.json();
    let z = &zones[0];
    assert_eq!(z["free_area"].as_array().unwrap().len(), 11);
    assert_eq!(z["pcp"].as_array().unwrap().len(), 2);
    let sum: u64 = z["free_area"][10]["by_migratetype"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, z["free_area"][10]["nr_free"].as_u64().unwrap());
    command(&r, &id, "local_irq_enable").await;
    command(&r, &id, "kfree a").await;
    command(&r, &id, "kfree a").await;
    let dmesg = get(&r, &format!("{s}/dmesg")).await.json();
    let lines: Vec<&str> = dmesg["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("BUG kmalloc-128")),
        "{lines:?}"
    );
    let since = get(&r, &format!("{s}/dmesg?since={}", dmesg["next"]))
        .await
        .json();
    assert_eq!(since["lines"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn dma_mappings_and_the_swiotlb_pool_show_on_the_map() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({"swiotlb": "force"})).await;
    let s = format!("/api/sessions/{id}");
    let meta = get(&r, &format!("{s}/frames/meta")).await.json();
    let pool = meta["swiotlb"]["start_pfn"].as_u64().expect("a pool") as usize;
    let pool_pages = meta["swiotlb"]["pages"].as_u64().unwrap() as usize;
    assert!(pool_pages > 0);
    let map = get(&r, &format!("{s}/frames")).await.body;
    assert!(map[40 + pool..40 + pool + pool_pages]
        .iter()
        .all(|&b| b == 0x40));

    assert_eq!(command(&r, &id, "dev nic mask=64").await["ok"], true);
    command(&r, &id, "x = kmalloc 8192 GFP_KERNEL").await;
    let pfn = get(&r, &format!("{s}/info/x")).await.json()["result"]["pfn"]
        .as_u64()
        .unwrap() as usize;
    let mapped = command(&r, &id, "h = dma_map_single nic x 8192 DMA_TO_DEVICE").await;
    assert_eq!(mapped["ok"], true, "{mapped}");
    let map = get(&r, &format!("{s}/frames")).await.body;
    assert_eq!(&map[40 + pfn..40 + pfn + 2], &[0x41, 0x41]);
    command(&r, &id, "dma_unmap_single nic h 8192 DMA_TO_DEVICE").await;
    let map = get(&r, &format!("{s}/frames")).await.body;
    assert_eq!(map[40 + pfn], 0x30);
}

#[tokio::test]
async fn a_halted_machine_refuses_changes_until_reboot() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    // CPU 0's pcp->lock of a machine booted with the same flags: boots are deterministic.
    let probe = MachineArgs::parse_from(FLAGS).unwrap().boot().unwrap();
    let mm = probe.mm();
    let pcp = &mm.per_cpu(0).pcp[0] as *const _ as u64;
    let lock = mm.layout().page_offset + (pcp - mm.platform().ram().base() as u64);
    command(&r, &id, &format!("write {lock:#x} 0 0xffffffff")).await;
    let panic = command(&r, &id, "check").await;
    assert_eq!(panic["halted"], true);
    let refused = command(&r, &id, "kmalloc 8 GFP_KERNEL").await;
    assert_eq!(refused["failed"], true);
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("has panicked"));
    // Views still serve a post-mortem; tour claims are refused.
    let s = format!("/api/sessions/{id}");
    assert_eq!(
        get(&r, &format!("{s}/proc/meminfo")).await.status,
        StatusCode::OK
    );
    assert_eq!(get(&r, &format!("{s}/frames")).await.status, StatusCode::OK);
    assert_eq!(get(&r, &s).await.json()["halted"], true);
    post_json(&r, &format!("{s}/tour/A"), &json!({}))
        .await
        .error(StatusCode::CONFLICT);
    let reboot = command(&r, &id, "reboot").await;
    assert_eq!(reboot["ok"], true);
    assert_eq!(reboot["halted"], false);
    assert_eq!(command(&r, &id, "kmalloc 8 GFP_KERNEL").await["ok"], true);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let mut c = config();
    c.idle_timeout = Duration::from_secs(60);
    let (app, r) = server(c);
    let old = new_session(&r, json!({})).await;
    assert_eq!(app.expire_idle_at(Instant::now()), 0);
    assert_eq!(
        app.expire_idle_at(Instant::now() + Duration::from_secs(120)),
        1
    );
    get(&r, &format!("/api/sessions/{old}"))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(app.session_count(), 0);
}

#[tokio::test]
async fn a_tour_claim_runs_on_the_sessions_machine() {
    let (_, r) = server(Config::new(
        MachineArgs::parse_from(["--ram=256M", "--cpus=2"]).unwrap(),
    ));
    let id = new_session(&r, json!({})).await;
    let reply = post_json(&r, &format!("/api/sessions/{id}/tour/A"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["claim"]["id"], "A");
    assert_eq!(v["claim"]["verdict"], "held", "{}", v["text"]);
    let ids: Vec<&str> = v["section_claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A", "B"]);
    assert!(v["text"].as_str().unwrap().contains("[A]"));
    // The kmalloc block is one run, the vmalloc pages several.
    let marks = v["highlight"].as_array().unwrap();
    let runs_of = |what: &str| marks.iter().filter(|m| m["what"] == what).count();
    assert_eq!(runs_of("vmalloc_contrast.kmalloc"), 1);
    assert!(runs_of("vmalloc_contrast.vmalloc") > 1);
    assert_eq!(v["generation"], 1);
}

/// The owner facts of the frame behind the page `name` (a `struct page *` variable).
async fn owner_of_page(r: &Router, id: &str, page: &str) -> Value {
    let pfn = command(r, id, &format!("page_to_pfn {page}")).await["result"].clone();
    let reply = get(r, &format!("/api/sessions/{id}/info/pfn:{pfn}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["owner"].clone()
}

#[tokio::test]
async fn a_frames_info_names_its_owner() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({"slab_debug": "FZPU"})).await;
    let k = command(&r, &id, "k = kmalloc 64 GFP_KERNEL").await["result"].clone();
    command(&r, &id, "kp = virt_to_page k").await;
    let slab = owner_of_page(&r, &id, "kp").await;
    assert_eq!(slab["kind"], "slab", "{slab}");
    assert_eq!(slab["cache"], "kmalloc-64", "{slab}");
    assert!(
        slab["flags"].as_array().unwrap().contains(&json!("slab")),
        "{slab}"
    );
    let ours = slab["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["addr"] == k)
        .unwrap_or_else(|| panic!("{k} not among {slab}"))
        .clone();
    assert_eq!(ours["free"], false);
    assert!(ours["caller"].is_string(), "owner tracking is on: {ours}");

    let v = command(&r, &id, "v = vmalloc 16384").await["result"].clone();
    command(&r, &id, "vp = vmalloc_to_page v").await;
    let area = owner_of_page(&r, &id, "vp").await;
    assert_eq!(area["kind"], "vmalloc", "{area}");
    assert_eq!(area["area"], v, "{area}");
    assert_eq!(
        (area["index"].as_u64(), area["offset"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(area["refcount"].as_u64().unwrap() > 0);

    let l = command(&r, &id, "l = kmalloc 20000 GFP_KERNEL").await["result"].clone();
    command(&r, &id, "lp = virt_to_page l").await;
    let large = owner_of_page(&r, &id, "lp").await;
    assert_eq!(large["kind"], "large kmalloc", "{large}");
    assert_eq!((&large["addr"], &large["size"]), (&l, &json!(32768)));

    // A slab page whose slab_cache (offset 32 of struct page) is garbage: "corrupt".
    command(&r, &id, "write kp 32 0x4141414141414141").await;
    let bad = owner_of_page(&r, &id, "kp").await;
    assert_eq!(bad["kind"], "slab", "{bad}");
    assert!(
        bad["corrupt"].as_str().unwrap().contains("no live cache"),
        "{bad}"
    );
    let tainted = get(&r, &format!("/api/sessions/{id}")).await.json()["tainted"].clone();
    assert_eq!(tainted, 0, "looking reports nothing");
}

/// Run tour claim `claim` on session `id`; its JSON.
async fn tour_claim(r: &Router, id: &str, claim: &str) -> Value {
    let reply = post_json(r, &format!("/api/sessions/{id}/tour/{claim}"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

#[tokio::test]
async fn claims_sharing_a_section_run_any_number_of_times_in_any_order() {
    let (_, r) = server(Config::new(
        MachineArgs::parse_from(["--ram=256M", "--cpus=2"]).unwrap(),
    ));
    let id = new_session(&r, json!({})).await;
    for claim in ["C", "Q1", "C", "Q1", "Q1"] {
        let v = tour_claim(&r, &id, claim).await;
        let measured = v["claim"]["measured"].as_str().unwrap();
        assert!(!measured.contains("stopped"), "{claim}: {measured}");
        assert_eq!(v["claim"]["verdict"], "held", "{claim}: {}", v["text"]);
        assert!(v["text"].as_str().unwrap().contains("device \"nic\""));
    }
    // A user's own "nic" with another mask stays theirs: the experiment plugs in its own.
    let other = new_session(&r, json!({})).await;
    assert_eq!(command(&r, &other, "dev nic mask=24").await["ok"], true);
    for _ in 0..2 {
        let v = tour_claim(&r, &other, "Q1").await;
        assert!(v["text"].as_str().unwrap().contains("device \"nic1\""));
        assert_eq!(v["claim"]["verdict"], "held", "{}", v["text"]);
    }
}

#[tokio::test]
async fn a_tour_claims_oopses_and_kernel_lines_are_its_own() {
    let (_, r) = server(Config::new(
        MachineArgs::parse_from(["--ram=256M", "--cpus=2"]).unwrap(),
    ));
    let id = new_session(&r, json!({})).await;
    let v = tour_claim(&r, &id, "D").await;
    // The handler's GFP_KERNEL kmalloc and vmalloc are refused with the kernel's splat.
    assert_eq!(v["oopsed"], true, "{}", v["text"]);
    assert!(v["oopses"].as_u64().unwrap() > 0);
    let console: Vec<&str> = v["console"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        console
            .iter()
            .any(|l| l.contains("sleeping function called from invalid context")),
        "{console:?}"
    );
    // Every quoted kernel line is in the console, and the console is in dmesg.
    let dmesg = get(&r, &format!("/api/sessions/{id}/dmesg")).await.json();
    let logged: Vec<&str> = dmesg["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(!console.is_empty());
    assert!(console.iter().all(|l| logged.contains(l)), "{logged:?}");
    // The next command is clean: the oops was the experiment's.
    let next = command(&r, &id, "alloc_pages GFP_KERNEL 2").await;
    assert_eq!(next["oops"], false, "{next}");
    assert_eq!(next["kernel"], json!([]), "{next}");
    // A claim that does not oops says so.
    let a = tour_claim(&r, &id, "A").await;
    assert_eq!(a["oopsed"], false, "{}", a["text"]);
}

#[tokio::test]
async fn a_trace_replays_seeks_and_reports_as_kmemlab_replay() {
    let path = std::path::Path::new("../../tests/data/traces/linux-3.5-i386-boot-slub.trace");
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return;
    }
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    let s = format!("/api/sessions/{id}");
    let bytes = std::fs::read(path).unwrap();
    let up = send(
        &r,
        request("POST", &format!("{s}/replay?lenient=1"))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(bytes))
            .unwrap(),
    )
    .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let events = up.json()["events"].as_u64().unwrap();
    assert!(events > 1000);
    let report = get(&r, &format!("{s}/replay/report")).await.text();
    let cli = Command::new(env!("CARGO_BIN_EXE_kmemlab"))
        .args(FLAGS)
        .args(["replay", "--lenient"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(report, String::from_utf8(cli.stdout).unwrap());
    let series = get(&r, &format!("{s}/replay/series")).await.json();
    assert!(!series["samples"].as_array().unwrap().is_empty());

    // Scrub: forward, back, to the end; the slab memory follows.
    let slab_kb = |r: Router| {
        let s = s.clone();
        async move {
            let t = get(&r, &format!("{s}/proc/meminfo")).await.text();
            t.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    };
    let at0 = slab_kb(r.clone()).await;
    let mid = post_json(
        &r,
        &format!("{s}/replay/seek"),
        &json!({"event": events / 2}),
    )
    .await;
    assert_eq!(mid.json()["position"], events / 2);
    let at_mid = slab_kb(r.clone()).await;
    post_json(&r, &format!("{s}/replay/seek"), &json!({"event": 0})).await;
    assert_eq!(slab_kb(r.clone()).await, at0);
    let end = post_json(&r, &format!("{s}/replay/seek"), &json!({"event": u64::MAX})).await;
    assert_eq!(end.json()["position"], events);
    assert!(at_mid > at0);
    post_json(
        &r,
        &format!("{s}/replay/seek"),
        &json!({"event": events / 2}),
    )
    .await;
    assert_eq!(slab_kb(r.clone()).await, at_mid);
}

/// Read one server-sent event (`event:` and `data:` lines up to a blank line).
async fn next_event(body: &mut Body) -> (String, Value) {
    let mut text = String::new();
    loop {
        let frame = body
            .frame()
            .await
            .expect("the stream goes on")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        if let Some(end) = text.find("\n\n") {
            let block = text[..end].to_string();
            if block.starts_with(':') {
                text.drain(..end + 2);
                continue;
            }
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            return (name, serde_json::from_str(data).unwrap());
        }
    }
}

#[tokio::test]
async fn events_report_changes_and_console_lines() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    let resp = r
        .clone()
        .oneshot(
            request("GET", &format!("/api/sessions/{id}/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let (name, hello) = next_event(&mut body).await;
    assert_eq!((name.as_str(), &hello["generation"]), ("hello", &json!(0)));
    command(&r, &id, "a = kmalloc 64 GFP_KERNEL").await;
    let (name, change) = next_event(&mut body).await;
    assert_eq!(name, "change");
    assert_eq!(change["generation"], 1);
    assert_eq!(change["source"], "command");
    assert_eq!(change["line"], 1);
    command(&r, &id, "ksize a").await; // reads: no change
    command(&r, &id, "kfree a").await;
    command(&r, &id, "kfree a").await; // a double free: kernel lines
    let (_, c2) = next_event(&mut body).await;
    assert_eq!(c2["generation"], 2);
    let (_, c3) = next_event(&mut body).await;
    assert_eq!(c3["generation"], 3);
    assert!(!c3["console"].as_array().unwrap().is_empty());
    send(
        &r,
        request("DELETE", &format!("/api/sessions/{id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let (name, _) = next_event(&mut body).await;
    assert_eq!(name, "gone");
}

#[tokio::test]
async fn change_events_name_the_views_a_command_may_have_changed() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    let resp = r
        .clone()
        .oneshot(
            request("GET", &format!("/api/sessions/{id}/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    next_event(&mut body).await; // hello
    let vmalloc_path = format!("/api/sessions/{id}/vmalloc");
    let before = get(&r, &vmalloc_path).await.json();
    command(&r, &id, "a = kmalloc 64 GFP_KERNEL").await;
    command(&r, &id, "p = alloc_pages GFP_KERNEL 3").await;
    command(&r, &id, "b = kmem_cache_alloc_bulk kmalloc-64 GFP_KERNEL 4").await;
    command(&r, &id, "kfree_bulk $b").await;
    command(&r, &id, "q = alloc_pages_bulk GFP_KERNEL 4").await;
    for _ in 0..5 {
        let (_, change) = next_event(&mut body).await;
        let views = change["changed"].as_array().unwrap();
        assert!(!views.contains(&json!("vmalloc")), "{change}");
        assert!(views.contains(&json!("frames")) && views.contains(&json!("slabs")));
    }
    // What was left out indeed did not change.
    assert_eq!(get(&r, &vmalloc_path).await.json(), before);
    command(&r, &id, "local_irq_disable").await;
    let (_, change) = next_event(&mut body).await;
    assert_eq!(change["changed"], json!(["cpus"]), "{change}");
    command(&r, &id, "v = vmalloc 8192").await;
    let (_, change) = next_event(&mut body).await;
    assert!(change["changed"]
        .as_array()
        .unwrap()
        .contains(&json!("vmalloc")));
}

/// Fifty sessions at once, each running a 1,000-command script: every answer correct,
/// and no session sees another's names or memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_sessions_run_a_thousand_commands_each() {
    let (_, r) = server(Config::new(
        MachineArgs::parse_from(["--ram=16M", "--cpus=1"]).unwrap(),
    ));
    let mut tasks = Vec::new();
    for n in 0..50u64 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let id = new_session(&r, json!({"seed": n})).await;
            let mut line = 0;
            for i in 0..250u64 {
                let size = 8 + (n * 7 + i) % 500;
                for (cmd, want_ok) in [
                    (format!("o{i} = kmalloc {size} GFP_KERNEL"), true),
                    (format!("ksize o{i}"), true),
                    (format!("kfree o{i}"), true),
                    (format!("! kfree o{}", i + 1000), true),
                ] {
                    line += 1;
                    let v = command(&r, &id, &cmd).await;
                    assert_eq!(v["line"], line);
                    assert_eq!(v["ok"], want_ok, "{cmd}: {v}");
                    if cmd.starts_with("ksize") {
                        assert!(v["result"].as_u64().unwrap() >= size);
                    }
                }
            }
            let s = get(&r, &format!("/api/sessions/{id}")).await.json();
            assert_eq!(s["lines"], 1000);
            assert_eq!(s["tainted"], 0);
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("a session's task"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

/// A real TCP socket: the server answers HTTP/1.1 on loopback.
#[test]
fn the_server_answers_over_tcp() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = config();
    c.listen = addr;
    let (_, r) = server(c);
    rt.spawn(async move { axum::serve(listener, r).await });
    let exchange = |req: String| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let limits = exchange(format!(
        "GET /api/limits HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    ));
    assert!(limits.starts_with("HTTP/1.1 200"), "{limits}");
    assert!(limits.contains("\"max_sessions\":64"));
    let body = "{\"ram\": \"32M\"}";
    let created = exchange(format!(
        "POST /api/sessions HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let rebinding = exchange(
        "GET /api/limits HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n".into(),
    );
    assert!(rebinding.starts_with("HTTP/1.1 403"), "{rebinding}");
}

/// Hostile values in every path parameter and body: always an answer below 500.
#[tokio::test]
async fn hostile_requests_never_get_a_server_error() {
    let (_, r) = server(config());
    let id = new_session(&r, json!({})).await;
    command(&r, &id, "a = kmalloc 100 GFP_KERNEL").await;
    let long = "f".repeat(5000);
    let values = [
        "0",
        "0xffffffffffffffff",
        "18446744073709551616",
        "-1",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "pfn:0xffffffffffffffff",
        "pfn:",
        "0x",
        "kmalloc-128",
        "a",
        "%E2%9C%93",
        long.as_str(),
    ];
    let bodies = [
        json!(null),
        json!([]),
        json!({"line": ""}),
        json!({"line": "#"}),
        json!({"line": "a = = ="}),
        json!({"event": -1}),
        json!({"event": 1e300}),
        json!({"sample": ""}),
        json!({"ram": 0}),
        json!({"ram": "16M", "cpus": 100000}),
        json!({"holes": ["0-1"]}),
        json!({"holes": "x"}),
        json!({"slab_debug": "XYZ"}),
    ];
    for (method, path) in ROUTES {
        if path.ends_with("/events") || *path == "/api/sessions/{id}" && *method == "delete" {
            continue;
        }
        for v in values {
            let concrete = path
                .replace("{id}", &id)
                .replace("{file}", v)
                .replace("{cache}", v)
                .replace("{addr}", v)
                .replace("{x}", v)
                .replace("{claim}", v);
            for body in &bodies {
                let req = request(&method.to_uppercase(), &concrete)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap();
                let reply = send(&r, req).await;
                assert!(
                    reply.status.as_u16() < 500,
                    "{method} {concrete} {body}: {} {}",
                    reply.status,
                    reply.text()
                );
                if *method == "get" {
                    break; // a GET has no body to vary
                }
            }
        }
    }
    let frames = get(
        &r,
        &format!("/api/sessions/{id}/frames?from=18446744073709551615&count=18446744073709551615"),
    )
    .await;
    assert_eq!(frames.status, StatusCode::OK);
    assert_eq!(frames.body.len(), 40);
}
