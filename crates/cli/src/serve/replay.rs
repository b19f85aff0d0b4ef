//! A session's trace replay: the trace kept in memory, replayed once to the end on a
//! scratch machine for the report and the memory-over-time series (the same code as
//! `kmemlab replay`), and indexed so that a seek can replay exactly the first N events on
//! the session's freshly rebooted machine.

use std::sync::Arc;

use kmemlab_sim::Machine;
use kmemlab_trace::{replay, ReplayOptions, Report, TraceReader};
use serde_json::{json, Value};

use crate::MachineArgs;

/// The largest trace a session may load.
pub const MAX_TRACE: usize = 256 << 20;
/// Events between two recorded byte offsets of the index.
const CHECKPOINT_EVERY: u64 = 1024;

/// A loaded trace.
pub struct ReplayState {
    /// Where it came from (a sample's name, or `upload`).
    pub name: String,
    bytes: Arc<[u8]>,
    options: ReplayOptions,
    lenient: bool,
    /// Allocator events in the trace.
    pub events: u64,
    /// Byte offset after every [`CHECKPOINT_EVERY`]th event (index 0: offset 0).
    checkpoints: Vec<u64>,
    /// The report of the whole trace.
    pub report: Report,
    /// Events replayed on the session's machine now.
    pub position: u64,
}

/// How to read and replay an upload.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Skip malformed lines.
    pub lenient: bool,
    /// Do not replay page events.
    pub no_page_replay: bool,
}

impl ReplayState {
    /// Index and replay `bytes` on a scratch machine booted with `args`.
    pub fn load(
        name: String,
        bytes: Arc<[u8]>,
        args: &MachineArgs,
        load: LoadOptions,
    ) -> Result<ReplayState, String> {
        let options = ReplayOptions {
            replay_pages: !load.no_page_replay,
            ..ReplayOptions::default()
        };
        let (events, checkpoints) = index(&bytes, load.lenient)?;
        let scratch = args.boot()?;
        let mut reader = TraceReader::new(&bytes[..], load.lenient);
        let report =
            replay(&scratch, &mut reader, &options, &mut |_| {}).map_err(|e| e.to_string())?;
        Ok(ReplayState {
            name,
            bytes,
            options,
            lenient: load.lenient,
            events,
            checkpoints,
            report,
            position: 0,
        })
    }

    /// The byte offset just after event `n` (0 for none).
    fn offset_after(&self, n: u64) -> Result<u64, String> {
        let k = (n / CHECKPOINT_EVERY) as usize;
        let start = *self.checkpoints.get(k).unwrap_or(&0);
        let mut left = n - k as u64 * CHECKPOINT_EVERY;
        let mut reader = TraceReader::new(&self.bytes[start as usize..], self.lenient);
        while left > 0 {
            match reader.next_event() {
                Ok(Some(_)) => left -= 1,
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(start + reader.stats().bytes)
    }

    /// Replay the first `n` events (clamped to the trace) on `machine`, which must be
    /// freshly booted.
    pub fn replay_prefix(&mut self, machine: &Machine, n: u64) -> Result<u64, String> {
        let n = n.min(self.events);
        let end = self.offset_after(n)?;
        let mut reader = TraceReader::new(&self.bytes[..end as usize], self.lenient);
        replay(machine, &mut reader, &self.options, &mut |_| {}).map_err(|e| e.to_string())?;
        self.position = n;
        Ok(n)
    }

    /// The memory-over-time series of the full replay.
    pub fn series(&self) -> Value {
        json!({"events": self.events, "samples": self.report.samples})
    }

    /// What the session's `replay` field shows.
    pub fn summary(&self) -> Value {
        json!({
            "name": self.name,
            "events": self.events,
            "lines": self.report.input.lines,
            "position": self.position,
            "series_points": self.report.samples.len(),
        })
    }
}

/// Count the events of a trace and note the byte offset after every
/// [`CHECKPOINT_EVERY`]th one.
fn index(bytes: &[u8], lenient: bool) -> Result<(u64, Vec<u64>), String> {
    let mut reader = TraceReader::new(bytes, lenient);
    let mut checkpoints = vec![0];
    let mut events = 0u64;
    while reader.next_event().map_err(|e| e.to_string())?.is_some() {
        events += 1;
        if events.is_multiple_of(CHECKPOINT_EVERY) {
            checkpoints.push(reader.stats().bytes);
        }
    }
    Ok((events, checkpoints))
}
