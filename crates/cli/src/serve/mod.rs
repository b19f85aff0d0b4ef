//! `kmemlab serve`: the explorer in the browser. An HTTP server (axum on tokio) whose
//! sessions each own a simulated machine driven by the shell's command language, with
//! read-only views of the machine for the page (`crates/cli/web/`, embedded in the
//! binary). `docs/SERVE_API.md` is the contract; `openapi.json` the same as OpenAPI 3.
//!
//! Safety: loopback by default; the `Host` and `Origin` headers are checked on every
//! request ([`guard`]); every limit (sessions, RAM, bodies, line length, idle time) is a
//! clear 4xx ([`ApiError`]); a machine runs only on a blocking thread, one request at a
//! time, behind its session's mutex.

mod api;
mod assets;
mod frames;
mod guard;
mod replay;
mod session;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clap::Args;

use crate::MachineArgs;

pub use api::{machine_args, router, OPENAPI, ROUTES};
pub use assets::files as web_files;
pub use frames::{encode_frames, FramePlane};
pub use session::{App, Config, Sample};

/// `kmemlab serve`'s own flags (the machine flags are the global ones).
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on; anything but loopback is reachable from the network
    /// (the server says so loudly).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Most sessions (machines) at once.
    #[arg(long, default_value_t = 64)]
    max_sessions: usize,
    /// Most RAM one session's machine may have.
    #[arg(long, default_value = "4G", value_parser = crate::parse_ram)]
    session_ram: u64,
    /// A session unused this long is deleted (e.g. 30m, 90s, 2h; a bare number is seconds).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A trace file offered to the page as a replay sample; repeatable.
    #[arg(long = "trace", value_name = "FILE")]
    traces: Vec<PathBuf>,
}

/// `30m`, `90s`, `2h`, `1800` (seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 30m, 90s, 2h)"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("'{s}' is not a duration (examples: 30m, 90s, 2h)"))
}

/// An API error: a 4xx status and `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong and why.
    pub message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Is `addr` reachable only from this machine?
fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The stack of the runtime's threads, which boot sessions' machines (`spawn_blocking`):
/// the main thread's 8 MiB rather than tokio's 2 MiB. Booting a machine moves `Mm` (about
/// 130 KB, with its section table and kmalloc caches) through a few frames: measured on
/// 2026-12-05, a release build needs between 512 KiB and 2 MiB of stack for it and a
/// debug build between 2 and 4 MiB, so 2 MiB overflowed in a debug build.
const SESSION_STACK: usize = 8 << 20;

/// Run `kmemlab serve` until interrupted.
pub fn run(machine: &MachineArgs, args: &ServeArgs) -> Result<bool, String> {
    let samples = args
        .traces
        .iter()
        .map(Sample::load)
        .collect::<Result<Vec<_>, String>>()?;
    // Boot once with the default flags, so that a machine that cannot boot is an error
    // at start rather than on every session.
    machine.boot()?;
    if machine.ram > args.session_ram {
        return Err(format!(
            "--ram {} is more than --session-ram {}",
            kmemlab_sim::format_size(machine.ram),
            kmemlab_sim::format_size(args.session_ram)
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SESSION_STACK)
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {}: {}",
                    args.listen,
                    crate::output::io_reason(&e)
                )
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let config = Config {
            defaults: machine.clone(),
            max_sessions: args.max_sessions,
            session_ram: args.session_ram,
            idle_timeout: args.idle_timeout,
            samples,
            listen: bound,
        };
        let app = App::new(config);
        if !is_loopback(&bound) {
            eprintln!(
                "kmemlab: WARNING: listening on {bound}, which is reachable from the network: \
                 anyone who can reach it can create machines and run commands on them \
                 (there is no authentication beyond the session ids)"
            );
        }
        crate::output::print(&format!("listening on http://{bound}\n"))?;
        let reaper = app.clone();
        tokio::spawn(async move {
            let every = reaper
                .config()
                .idle_timeout
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                tokio::time::sleep(every).await;
                reaper.expire_idle_at(std::time::Instant::now());
            }
        });
        // Ctrl-C ends the server at once: an open event stream (a browser tab) would
        // keep a graceful shutdown waiting forever.
        tokio::select! {
            served = axum::serve(listener, router(app)) => {
                served.map_err(|e| format!("the server stopped: {e}"))
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }
}
