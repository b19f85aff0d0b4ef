//! Where the replay's events come from: the reader itself on the replaying thread
//! ([`Direct`]), or a second host thread that parses while this one replays
//! ([`parse_thread`] sending to [`Received`]).
//!
//! Parsing is the larger half of a replay's cost (about 1,900 instructions per event of
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

use std::collections::VecDeque;
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

/// Events for the replay loop, in input order.
pub(super) trait EventSource {
    /// The next event, `Ok(None)` at the end of the input.
    fn next_event(&mut self) -> Result<Option<TraceEvent>, TraceError>;
    /// The strings the events' ids name.
    fn symbols(&self) -> &Symbols;
    /// The callchains the events' ids name.
    fn chains(&self) -> &Callchains;
    /// The input counts to report after the event last returned, when reading it passed
    /// a progress point (every `progress_every` lines).
    fn progress_due(&mut self) -> Option<&InputStats>;
}

/// The reader on the replaying thread itself.
pub(super) struct Direct<'r, R> {
    reader: &'r mut TraceReader<R>,
    progress: ProgressPoints,
}

impl<'r, R: BufRead> Direct<'r, R> {
    /// Events straight from `reader`, progress every `every` lines.
    pub(super) fn new(reader: &'r mut TraceReader<R>, every: u64) -> Self {
        Direct {
            reader,
            progress: ProgressPoints::new(every),
        }
    }
}

impl<R: BufRead> EventSource for Direct<'_, R> {
    #[inline]
    fn next_event(&mut self) -> Result<Option<TraceEvent>, TraceError> {
        self.reader.next_event()
    }

    fn symbols(&self) -> &Symbols {
        &self.reader.parser().symbols
    }

    fn chains(&self) -> &Callchains {
        self.reader.chains()
    }

    #[inline]
    fn progress_due(&mut self) -> Option<&InputStats> {
        let stats = self.reader.stats();
        self.progress.passed(stats.lines).then_some(stats)
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
        events.clear();
        let mut batch_progress = Vec::new();
        let mut error = None;
        let mut ended = false;
        while events.len() < BATCH_EVENTS {
            match reader.next_event() {
                Ok(Some(ev)) => {
                    events.push(ev);
                    let stats = reader.stats();
                    if progress.passed(stats.lines) {
                        batch_progress.push((events.len() - 1, stats.clone()));
                    }
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    ended = true;
                    break;
                }
            }
        }
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
    /// The batch being replayed and the index of its next event.
    events: Vec<TraceEvent>,
    next: usize,
    progress: VecDeque<(usize, InputStats)>,
    /// The counts of the progress point passed last, kept for `progress_due`'s answer.
    due: Option<InputStats>,
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
            next: 0,
            progress: VecDeque::new(),
            due: None,
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
        self.next = 0;
        for name in batch.symbols.iter() {
            let id = self.symbols.intern(name);
            debug_assert_eq!(id as usize + 1, self.symbols.len());
        }
        for chain in batch.chains.iter() {
            let id = self.chains.intern(chain);
            debug_assert_eq!(id.map(|id| id as usize + 1), Some(self.chains.len()));
        }
        self.progress.clear();
        self.progress.extend(batch.progress);
        self.error = batch.error;
    }
}

impl EventSource for Received {
    #[inline]
    fn next_event(&mut self) -> Result<Option<TraceEvent>, TraceError> {
        loop {
            if let Some(&ev) = self.events.get(self.next) {
                self.next += 1;
                return Ok(Some(ev));
            }
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            match self.batches.recv() {
                Ok(batch) => self.load(batch),
                // The parse thread is done (or died: the caller's join says which).
                Err(_) => return Ok(None),
            }
        }
    }

    fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    fn chains(&self) -> &Callchains {
        &self.chains
    }

    #[inline]
    fn progress_due(&mut self) -> Option<&InputStats> {
        let last = self.next.checked_sub(1)?;
        if self.progress.front().map(|&(at, _)| at) != Some(last) {
            return None;
        }
        self.due = self.progress.pop_front().map(|(_, stats)| stats);
        self.due.as_ref()
    }
}
