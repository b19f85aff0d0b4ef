//! Where the replay's events come from: the reader itself on the replaying thread
//! ([`Direct`]), or a second host thread that parses while this one replays
//! ([`parse_thread`] sending to [`Received`]).
//!
//! Either way the events come in batches of [`BATCH_EVENTS`], parsed in place into the
//! batch's vector (`TraceReader::read_batch`) and replayed from it by reference, so that
//! an event is never copied between the two: perf found both threads stalled on copies
//! of just-built 112-byte events, which the CPU could not forward from its store buffer.
//!
//! Parsing is the larger half of a replay's cost (about 1,800 instructions per event of
//! the shared trace, against about 1,100 for the replay), and the two halves share
//! nothing but the events, the interned strings ([`Symbols`]) and the callchains
//! ([`Callchains`]) the events name. So the parse thread reads [`BATCH_EVENTS`] events at
//! a time and sends each batch, with the strings and chains interned since the previous
//! one, over a channel of [`BATCHES_IN_FLIGHT`] batches; the replaying thread keeps
//! copies of the strings and chains (the same ids: both tables only grow, in order) and
//! applies the events in the order they were read. Memory stays bounded by the channel;
//! the report is the same byte for byte, since the events, their order, the ids and the
//! progress points are; an error stops the parse thread and reaches the replay after the
//! events before it, as it does on one thread.
//!
//! It mirrors no kernel code: the kernel's tracing ring buffer has a reader (`perf`,
//! `trace-cmd`) on its own thread for the same reason.

use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender};

use crate::callchain::{Callchains, Frame};
use crate::event::TraceEvent;
use crate::parse::Symbols;
use crate::reader::{InputStats, TraceError, TraceReader};

/// Events per batch: enough to make the channel's cost per event small (one send and one
/// receive per batch), few enough that the replay starts at once.
pub(super) const BATCH_EVENTS: usize = 1024;

/// Batches queued between the threads at most (the memory bound: a few hundred KiB).
pub(super) const BATCHES_IN_FLIGHT: usize = 4;

/// Events for the replay loop, in input order, a batch at a time.
pub(super) trait EventSource {
    /// Moves on to the next batch: `Ok(false)` at the end of the input. An error comes
    /// after the batches of the events above it.
    fn next_batch(&mut self) -> Result<bool, TraceError>;
    /// The batch's events.
    fn events(&self) -> &[TraceEvent];
    /// The batch's progress points: (index in [`EventSource::events`], the input counts
    /// to report once that event is replayed), in index order.
    fn progress(&self) -> &[(usize, InputStats)];
    /// The strings the events' ids name.
    fn symbols(&self) -> &Symbols;
    /// The callchains the events' ids name.
    fn chains(&self) -> &Callchains;
}

/// The reader on the replaying thread itself.
pub(super) struct Direct<'r, R> {
    reader: &'r mut TraceReader<R>,
    points: ProgressPoints,
    events: Vec<TraceEvent>,
    progress: Vec<(usize, InputStats)>,
}

impl<'r, R: BufRead> Direct<'r, R> {
    /// Events straight from `reader`, progress every `every` lines.
    pub(super) fn new(reader: &'r mut TraceReader<R>, every: u64) -> Self {
        Direct {
            reader,
            points: ProgressPoints::new(every),
            events: Vec::with_capacity(BATCH_EVENTS),
            progress: Vec::new(),
        }
    }
}

impl<R: BufRead> EventSource for Direct<'_, R> {
    fn next_batch(&mut self) -> Result<bool, TraceError> {
        self.progress.clear();
        let (points, progress) = (&mut self.points, &mut self.progress);
        self.reader
            .read_batch(&mut self.events, BATCH_EVENTS, |i, stats| {
                if points.passed(stats.lines) {
                    progress.push((i, stats.clone()));
                }
            })?;
        Ok(!self.events.is_empty())
    }

    fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    fn progress(&self) -> &[(usize, InputStats)] {
        &self.progress
    }

    fn symbols(&self) -> &Symbols {
        &self.reader.parser().symbols
    }

    fn chains(&self) -> &Callchains {
        self.reader.chains()
    }
}

/// When the progress callback is due: each time the lines read reach the next point.
struct ProgressPoints {
    every: u64,
    next: u64,
}

impl ProgressPoints {
    fn new(every: u64) -> Self {
        let every = every.max(1);
        ProgressPoints { every, next: every }
    }

    /// Whether `lines` read passed the next point (which then moves on).
    #[inline]
    fn passed(&mut self, lines: u64) -> bool {
        if lines < self.next {
            return false;
        }
        self.next = lines + self.every;
        true
    }
}

/// What the parse thread sends: events in input order, and what they need.
pub(super) struct Batch {
    events: Vec<TraceEvent>,
    /// Strings interned since the previous batch, in id order.
    symbols: Vec<Box<str>>,
    /// Chains interned since the previous batch, in id order.
    chains: Vec<Box<[Frame]>>,
    /// (index in `events`, input counts): progress due after that event.
    progress: Vec<(usize, InputStats)>,
    /// The error that stopped the reading, after the events.
    error: Option<TraceError>,
}

/// The parse thread's work: read `reader` to its end (or its first error) in batches,
/// sent over `batches`; emptied event vectors come back over `spare` to be refilled.
/// Stops early when the replay has stopped (the channel is closed).
pub(super) fn parse_thread<R: BufRead>(
    reader: &mut TraceReader<R>,
    batches: SyncSender<Batch>,
    spare: Receiver<Vec<TraceEvent>>,
    progress_every: u64,
) {
    let mut progress = ProgressPoints::new(progress_every);
    let (mut symbols_sent, mut chains_sent) = (0usize, 0usize);
    loop {
        let mut events = spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_EVENTS));
        let mut batch_progress = Vec::new();
        let read = reader.read_batch(&mut events, BATCH_EVENTS, |i, stats| {
            if progress.passed(stats.lines) {
                batch_progress.push((i, stats.clone()));
            }
        });
        // The last batch is empty: the input ended, or an error stopped the reading (an
        // error below events comes with the next batch, after them).
        let (ended, error) = match read {
            Ok(()) => (events.is_empty(), None),
            Err(e) => (true, Some(e)),
        };
        let symbols = &reader.parser().symbols;
        let new_symbols = (symbols_sent..symbols.len())
            .map(|id| Box::from(symbols.name(id as u32)))
            .collect();
        symbols_sent = symbols.len();
        let chains = reader.chains();
        let new_chains = (chains_sent..chains.len())
            .map(|id| Box::from(chains.get(id as u32)))
            .collect();
        chains_sent = chains.len();
        let batch = Batch {
            events,
            symbols: new_symbols,
            chains: new_chains,
            progress: batch_progress,
            error,
        };
        if batches.send(batch).is_err() || ended {
            return;
        }
    }
}

/// The replaying thread's end of the channel.
pub(super) struct Received {
    batches: Receiver<Batch>,
    spare: SyncSender<Vec<TraceEvent>>,
    /// The batch being replayed, and its progress points.
    events: Vec<TraceEvent>,
    progress: Vec<(usize, InputStats)>,
    /// The error that follows the batch.
    error: Option<TraceError>,
    symbols: Symbols,
    chains: Callchains,
}

impl Received {
    /// The receiving end of a parse thread's `batches`, returning emptied vectors over
    /// `spare`.
    pub(super) fn new(batches: Receiver<Batch>, spare: SyncSender<Vec<TraceEvent>>) -> Self {
        Received {
            batches,
            spare,
            events: Vec::new(),
            progress: Vec::new(),
            error: None,
            symbols: Symbols::default(),
            chains: Callchains::default(),
        }
    }

    /// Take in a batch: its strings and chains appended to the copies (the same ids).
    fn load(&mut self, batch: Batch) {
        let used = std::mem::replace(&mut self.events, batch.events);
        // A full `spare` channel (or a parse thread gone) just drops the vector.
        let _ = self.spare.try_send(used);
        for name in batch.symbols.iter() {
            let id = self.symbols.intern(name);
            debug_assert_eq!(id as usize + 1, self.symbols.len());
        }
        for chain in batch.chains.iter() {
            let id = self.chains.intern(chain);
            debug_assert_eq!(id.map(|id| id as usize + 1), Some(self.chains.len()));
        }
        self.progress = batch.progress;
        self.error = batch.error;
    }
}

impl EventSource for Received {
    fn next_batch(&mut self) -> Result<bool, TraceError> {
        loop {
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            match self.batches.recv() {
                Ok(batch) => self.load(batch),
                // The parse thread is done (or died: the caller's join says which).
                Err(_) => return Ok(false),
            }
            if !self.events.is_empty() {
                return Ok(true);
            }
        }
    }

    fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    fn progress(&self) -> &[(usize, InputStats)] {
        &self.progress
    }

    fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    fn chains(&self) -> &Callchains {
        &self.chains
    }
}
