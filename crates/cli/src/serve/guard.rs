//! The `Host` and `Origin` checks, so that a web page elsewhere cannot drive the local
//! server: DNS rebinding (a foreign name resolving to 127.0.0.1) fails the `Host` check,
//! and a cross-site form or fetch that changes state fails the `Origin` check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, App};

/// The host names that always mean this machine.
const LOOPBACK_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// Split `host[:port]` (IPv6 in brackets) into the name and the port.
fn split_host(value: &str) -> (String, Option<&str>) {
    if let Some(rest) = value.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        let name = format!("[{}]", &rest[..end]);
        let port = rest[end + 1..].strip_prefix(':');
        return (name.to_ascii_lowercase(), port);
    }
    match value.rsplit_once(':') {
        Some((name, port)) => (name.to_ascii_lowercase(), Some(port)),
        None => (value.to_ascii_lowercase(), None),
    }
}

/// The name the listen address is reached by, as it appears in a `Host` header.
fn listen_name(listen: &SocketAddr) -> String {
    match listen {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// Is `host` (a `Host` header value) a name of this server?
pub fn host_allowed(host: &str, listen: &SocketAddr) -> bool {
    let (name, port) = split_host(host.trim());
    if port.is_some_and(|p| p.parse::<u16>().ok() != Some(listen.port())) {
        return false;
    }
    // Listening on every address: the user chose to serve whatever name reaches it.
    if listen.ip().is_unspecified() {
        return true;
    }
    LOOPBACK_NAMES.contains(&name.as_str()) || name == listen_name(listen)
}

/// Does a request with this `Origin` come from the page this server serves (the same
/// scheme, host and port as its `Host`)?
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The middleware: `403` for an unknown `Host`, and for a state-changing request from a
/// foreign `Origin` (or one a browser marks `Sec-Fetch-Site: cross-site`).
pub async fn check(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    match verdict(&app, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn verdict(app: &App, request: &Request) -> Result<(), ApiError> {
    let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, m);
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| forbidden("a request needs a Host header".into()))?;
    if !host_allowed(host, &app.config().listen) {
        return Err(forbidden(format!(
            "Host '{}' is not this server's name (use http://{})",
            host.chars().take(100).collect::<String>(),
            app.config().listen
        )));
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !changes_state {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !same_origin(origin, host) {
            return Err(forbidden(format!(
                "Origin '{}' may not change this server's machines (only its own page may)",
                origin.chars().take(100).collect::<String>()
            )));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(forbidden(
            "a cross-site request may not change this server's machines".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let lo: SocketAddr = "127.0.0.1:7878".parse().unwrap();
        assert!(host_allowed("127.0.0.1:7878", &lo));
        assert!(host_allowed("localhost:7878", &lo));
        assert!(host_allowed("LOCALHOST", &lo));
        assert!(host_allowed("[::1]:7878", &lo));
        assert!(!host_allowed("localhost:80", &lo));
        assert!(!host_allowed("evil.example:7878", &lo));
        assert!(!host_allowed("127.0.0.1.evil.example:7878", &lo));
        let any: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        assert!(host_allowed("myhost:7878", &any));
        let v6: SocketAddr = "[fe80::1]:9000".parse().unwrap();
        assert!(host_allowed("[fe80::1]:9000", &v6));
    }

    #[test]
    fn origins() {
        assert!(same_origin("http://127.0.0.1:7878", "127.0.0.1:7878"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:7878"));
        assert!(!same_origin("null", "127.0.0.1:7878"));
        assert!(!same_origin("https://127.0.0.1:7878", "127.0.0.1:7878"));
    }
}
