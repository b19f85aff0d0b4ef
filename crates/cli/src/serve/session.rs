//! Sessions: one simulated machine each, behind a mutex, with its console log, its event
//! channel and its replay; and the registry that creates, finds and expires them within
//! the server's limits.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::replay::ReplayState;
use super::ApiError;
use crate::shell::Shell;
use crate::MachineArgs;

/// The most console lines a session keeps.
pub const DMESG_LINES: usize = 10_000;
/// Traces loaded at once, server-wide.
pub const UPLOADS: usize = 2;
/// Events buffered per session for slow event streams (then they get `resync`).
const EVENT_BUFFER: usize = 256;

/// The server's settings.
#[derive(Clone)]
pub struct Config {
    /// The machine flags a session gets unless it asks for others.
    pub defaults: MachineArgs,
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Most RAM per session.
    pub session_ram: u64,
    /// Idle time after which a session is deleted.
    pub idle_timeout: Duration,
    /// Traces offered as replay samples.
    pub samples: Vec<Sample>,
    /// The address the server listens on (for the `Host` check).
    pub listen: SocketAddr,
}

impl Config {
    /// The defaults for tests and embedding: loopback port 7878, 64 sessions of at most
    /// 4 GiB, 30 minutes idle, no samples.
    pub fn new(defaults: MachineArgs) -> Config {
        Config {
            defaults,
            max_sessions: 64,
            session_ram: 4 << 30,
            idle_timeout: Duration::from_secs(30 * 60),
            samples: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
        }
    }
}

/// A trace the server was started with (`--trace FILE`), read once at start.
#[derive(Clone)]
pub struct Sample {
    /// Its file name.
    pub name: String,
    /// Its bytes.
    pub bytes: Arc<[u8]>,
}

impl Sample {
    /// Read `path`, at most [`super::replay::MAX_TRACE`] bytes.
    pub fn load(path: impl AsRef<Path>) -> Result<Sample, String> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "--trace {}: {}",
                path.display(),
                crate::output::io_reason(&e)
            )
        })?;
        if bytes.len() > super::replay::MAX_TRACE {
            return Err(format!(
                "--trace {}: more than {} MiB",
                path.display(),
                super::replay::MAX_TRACE >> 20
            ));
        }
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        Ok(Sample {
            name,
            bytes: bytes.into(),
        })
    }
}

/// The console lines a session has seen, numbered from 0, the last [`DMESG_LINES`] kept.
#[derive(Default)]
pub struct Dmesg {
    lines: VecDeque<String>,
    /// The number of the oldest line kept.
    first: u64,
}

impl Dmesg {
    /// Append lines.
    pub fn extend(&mut self, lines: impl IntoIterator<Item = String>) {
        for line in lines {
            if self.lines.len() == DMESG_LINES {
                self.lines.pop_front();
                self.first += 1;
            }
            self.lines.push_back(line);
        }
    }
    /// The number the next line will get.
    pub fn next(&self) -> u64 {
        self.first + self.lines.len() as u64
    }
    /// The lines from `since` on, as JSON.
    pub fn since(&self, since: u64) -> Value {
        let skip = since.saturating_sub(self.first) as usize;
        let lines: Vec<Value> = self
            .lines
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, text)| json!({"seq": self.first + i as u64, "text": text}))
            .collect();
        json!({"first": self.first, "lines": lines, "next": self.next()})
    }
}

/// What the machine-side of a session holds (behind its mutex).
pub struct Machine {
    /// The shell on the session's machine.
    pub shell: Shell,
    /// Command lines posted so far.
    pub lines: usize,
    /// The console.
    pub dmesg: Dmesg,
    /// The loaded trace, if any.
    pub replay: Option<ReplayState>,
}

impl Machine {
    /// Move the machine's pending console lines to the dmesg log; returns them.
    pub fn drain_console(&mut self) -> Vec<String> {
        let lines = self.shell.machine.take_console();
        self.dmesg.extend(lines.iter().cloned());
        lines
    }
}

/// One session.
pub struct Session {
    /// The id (32 hex digits).
    pub id: String,
    /// The machine flags it was created with.
    pub args: MachineArgs,
    machine: Mutex<Machine>,
    generation: AtomicU64,
    events: broadcast::Sender<String>,
    last_used: Mutex<Instant>,
    streams: AtomicUsize,
}

impl Session {
    /// Lock the machine (a poisoned lock is taken anyway: the machine itself reports
    /// its own breakage, and nothing here panics while holding it on purpose).
    pub fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation counter.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Bump the generation and send a `change` event; returns the new generation.
    pub fn changed(&self, source: &str, mut detail: Value, machine: &Machine) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if let Value::Object(map) = &mut detail {
            map.insert("generation".into(), json!(generation));
            map.insert("source".into(), json!(source));
            map.insert(
                "changed".into(),
                json!(["frames", "zones", "slabs", "vmalloc", "cpus", "proc"]),
            );
            map.insert("halted".into(), json!(machine.shell.machine.halted()));
            map.insert("tainted".into(), json!(machine.shell.machine.tainted().0));
            map.insert("dmesg_next".into(), json!(machine.dmesg.next()));
        }
        self.send("change", &detail);
        generation
    }

    /// Send a `console` event with `lines` (nothing if there are none).
    pub fn console(&self, lines: &[String], machine: &Machine) {
        if !lines.is_empty() {
            self.send(
                "console",
                &json!({"console": lines, "dmesg_next": machine.dmesg.next()}),
            );
        }
    }

    fn send(&self, event: &str, data: &Value) {
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(format!("{event}\n{data}"));
    }

    /// A receiver of this session's events (`"<name>\n<json>"`), counted as a stream that
    /// keeps the session alive until it is dropped.
    pub fn subscribe(self: &Arc<Self>) -> EventStream {
        self.streams.fetch_add(1, Ordering::SeqCst);
        EventStream {
            session: self.clone(),
            receiver: self.events.subscribe(),
        }
    }

    fn touch(&self, now: Instant) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn idle_since(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An open event stream of a session.
pub struct EventStream {
    /// The session.
    pub session: Arc<Session>,
    /// Its events.
    pub receiver: broadcast::Receiver<String>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.session.streams.fetch_sub(1, Ordering::SeqCst);
        self.session.touch(Instant::now());
    }
}

/// The server: its settings and its sessions.
pub struct App {
    config: Config,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Permits to load a trace (see [`UPLOADS`]).
    pub uploads: Arc<tokio::sync::Semaphore>,
}

impl App {
    /// A server with no sessions.
    pub fn new(config: Config) -> Arc<App> {
        Arc::new(App {
            config,
            sessions: Mutex::new(HashMap::new()),
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS)),
        })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions alive.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Boot a machine with `args` and keep it as a new session, within the limits.
    pub fn create(&self, args: MachineArgs) -> Result<Arc<Session>, ApiError> {
        self.expire_idle_at(Instant::now());
        if self.session_count() >= self.config.max_sessions {
            return Err(too_many(self.config.max_sessions));
        }
        if args.ram > self.config.session_ram {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "ram {} is more than this server allows a session ({}; --session-ram)",
                    kmemlab_sim::format_size(args.ram),
                    kmemlab_sim::format_size(self.config.session_ram)
                ),
            ));
        }
        let machine = args
            .boot()
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let session = Arc::new(Session {
            id: new_session_id()?,
            args,
            machine: Mutex::new(Machine {
                shell: Shell::new(machine),
                lines: 0,
                dmesg: Dmesg::default(),
                replay: None,
            }),
            generation: AtomicU64::new(0),
            events,
            last_used: Mutex::new(Instant::now()),
            streams: AtomicUsize::new(0),
        });
        let mut sessions = self.sessions();
        // Checked again under the lock: another request may have taken the last place
        // while this one booted.
        if sessions.len() >= self.config.max_sessions {
            return Err(too_many(self.config.max_sessions));
        }
        sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// The session `id`, marked as used now; `404` for none.
    pub fn get(&self, id: &str) -> Result<Arc<Session>, ApiError> {
        let now = Instant::now();
        self.expire_idle_at(now);
        let session = self
            .sessions()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no session '{}'", printable(id))))?;
        session.touch(now);
        Ok(session)
    }

    /// Delete the session `id` (its event streams get `gone` and end); `404` for none.
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        let session = self
            .sessions()
            .remove(id)
            .ok_or_else(|| ApiError::not_found(format!("no session '{}'", printable(id))))?;
        session.send("gone", &json!({"id": session.id}));
        Ok(())
    }

    /// Delete every session unused for the idle timeout as of `now` (and with no event
    /// stream open); returns how many. The server calls it with the clock; tests call it
    /// with a time of their choosing.
    pub fn expire_idle_at(&self, now: Instant) -> usize {
        let timeout = self.config.idle_timeout;
        let mut sessions = self.sessions();
        let before = sessions.len();
        sessions.retain(|_, s| {
            s.streams.load(Ordering::SeqCst) > 0
                || now.saturating_duration_since(s.idle_since()) < timeout
        });
        before - sessions.len()
    }
}

fn too_many(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{max} sessions already exist (the server's --max-sessions); delete one or wait for one to expire"),
    )
}

/// A new session id: 128 bits from the operating system's random number generator, as
/// 32 hex digits. These are security tokens (one tab cannot guess another's), not
/// simulation randomness: the machine's own random choices still come from its seed.
fn new_session_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the operating system's random number generator failed: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `s` cut to 64 characters, for echoing a bad id in an error.
fn printable(s: &str) -> String {
    s.chars().take(64).collect()
}
