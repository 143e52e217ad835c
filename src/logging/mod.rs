//! Where log lines go: standard error, and for `podmedic serve` in batches a few milliseconds apart.
//!
//! A webhook writes one line per patched admission. Written one `write(2)` each to the pipe a
//! container runtime reads, that line cost more CPU than the rest of the admission's logging and
//! metrics together (15-20 µs of a 68 µs admission, BENCHMARKS.md): the system call, and waking
//! the reader on the other core for every line. [`BatchedStderr`] appends each line to a buffer in
//! memory and a thread of its own writes the buffer out [`GATHER`] after its first line, so under
//! load one write carries many lines and the request path never enters the kernel to log.
//!
//! What it keeps of plain standard error:
//! - order: lines come out in the order they were logged (every write happens under the buffer's
//!   lock);
//! - promptness where it matters: a WARN or ERROR line is written at once, with everything before
//!   it, and the buffer is written at once when it reaches [`MAX_PENDING`] (so memory stays bounded
//!   and a stalled log reader slows podmedic down as it would have anyway);
//! - nothing lost on a normal exit: [`FlushOnDrop`] writes what is left. What a `SIGKILL` or an
//!   out-of-memory kill loses is at most the last [`GATHER`] of INFO and DEBUG lines.

mod fields;

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;

use fields::PlainFields;

/// kube's client logs every failed request at ERROR with no context (`failed with error client
/// error (Connect)`); podmedic logs each of those failures itself, with what kind of failure it is
/// (`cluster::ApiFailure`). So they are off, unless the filter names `kube_client` itself.
const KUBE_REQUEST_ERRORS_OFF: &str = "kube_client::client::builder=off";

/// Installs the global logger: lines to standard error (so `podmedic fix` can write manifests to
/// standard output), filtered by `level` (tracing's EnvFilter syntax; RUST_LOG when `None`, `info`
/// when that is unset too), as JSON objects when `json`.
///
/// With `batched` (for `podmedic serve`) INFO and DEBUG lines go through [`BatchedStderr`]; keep
/// the returned guard until exit. If its thread cannot be started, lines go straight to standard
/// error. Plain text (not a terminal, not JSON) has its fields written by [`PlainFields`]: the
/// default formatter's text, cheaper.
pub fn init(level: Option<&str>, json: bool, batched: bool) -> Option<FlushOnDrop> {
    let requested = match level {
        Some(level) => Some(level.to_owned()),
        None => std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|v| !v.trim().is_empty()),
    };
    let parse = |text: &str| {
        let text =
            if text.contains("kube_client") { text.to_owned() } else { format!("{text},{KUBE_REQUEST_ERRORS_OFF}") };
        EnvFilter::try_new(text)
    };
    let filter = requested.as_deref().map_or_else(|| parse("info"), parse).unwrap_or_else(|e| {
        eprintln!("podmedic: ignoring the log filter {requested:?}: {e}");
        EnvFilter::new(format!("info,{KUBE_REQUEST_ERRORS_OFF}"))
    });
    let (writer, guard) = match batched.then(BatchedStderr::start) {
        Some(Ok((writer, guard))) => (Stderr::Batched(writer), Some(guard)),
        Some(Err(e)) => {
            eprintln!("podmedic: logging without batches, the log thread did not start: {e}");
            (Stderr::Direct, None)
        }
        None => (Stderr::Direct, None),
    };
    let ansi = io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else if ansi {
        builder.init();
    } else {
        builder.fmt_fields(PlainFields).init();
    }
    guard
}

/// How long the writer thread waits after the first line of a batch before writing the batch.
pub const GATHER: Duration = Duration::from_millis(5);

/// Pending bytes at which the logging thread writes the buffer itself instead of waiting.
pub const MAX_PENDING: usize = 256 * 1024;

/// Standard error, written line by line or in batches.
enum Stderr {
    Direct,
    Batched(BatchedStderr),
}

/// One event's writer: tracing-subscriber's `EitherWriter` (no allocation per line, as a box would
/// make).
type StderrLine<'a> = EitherWriter<io::Stderr, Line<'a>>;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrLine<'a>;

    fn make_writer(&'a self) -> StderrLine<'a> {
        match self {
            Stderr::Direct => EitherWriter::A(io::stderr()),
            Stderr::Batched(w) => EitherWriter::B(w.make_writer()),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> StderrLine<'a> {
        match self {
            Stderr::Direct => EitherWriter::A(io::stderr()),
            Stderr::Batched(w) => EitherWriter::B(w.make_writer_for(meta)),
        }
    }
}

/// A `tracing_subscriber` writer that batches INFO and DEBUG lines to standard error.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Where a batch is written.
type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// The writer thread, to wake when a batch begins.
    writer: OnceLock<Thread>,
    stopping: AtomicBool,
    /// Where batches go: standard error, or a test's sink.
    sink: Sink,
}

/// Writes what is left and stops the writer thread when dropped; keep it alive while logging.
#[must_use = "lines still pending are lost unless this guard is dropped at exit"]
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedStderr {
    /// Starts the writer thread. Fails only if the thread cannot be spawned.
    pub fn start() -> io::Result<(Self, FlushOnDrop)> {
        Self::start_with_sink(Box::new(|bytes: &[u8]| {
            // A failed write to standard error cannot be reported anywhere; the lines are dropped,
            // as `eprintln!` would have panicked and tracing's own writer ignores the error.
            let _ = io::stderr().lock().write_all(bytes);
        }))
    }

    fn start_with_sink(sink: Sink) -> io::Result<(Self, FlushOnDrop)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(16 * 1024)),
            writer: OnceLock::new(),
            stopping: AtomicBool::new(false),
            sink,
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("podmedic-log".into()).spawn(move || shared.run_writer())?
        };
        let _ = shared.writer.set(thread.thread().clone());
        Ok((BatchedStderr { shared: Arc::clone(&shared) }, FlushOnDrop { shared, thread: Some(thread) }))
    }
}

impl Shared {
    /// The writer thread: sleeps until a batch begins, lets it gather, writes it.
    /// What is left at the end is written by [`FlushOnDrop`], after this thread has stopped.
    fn run_writer(&self) {
        loop {
            std::thread::park();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(GATHER);
            self.write_pending();
        }
    }

    fn write_pending(&self) {
        Self::write_out(&self.sink, &mut self.lock());
    }

    /// Writes `pending` to `sink` and empties it (called with the buffer's lock held, so lines
    /// keep their order).
    fn write_out(sink: &Sink, pending: &mut Vec<u8>) {
        if !pending.is_empty() {
            sink(pending);
            pending.clear();
        }
    }

    fn push(&self, line: &[u8], urgent: bool) {
        let mut pending = self.lock();
        let begins_batch = pending.is_empty();
        pending.extend_from_slice(line);
        if urgent || pending.len() >= MAX_PENDING || self.stopping.load(Ordering::Acquire) {
            Self::write_out(&self.sink, &mut pending);
        } else if begins_batch && let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }

    /// The buffer, even if a thread panicked while holding it (the bytes are still lines).
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.shared.write_pending();
    }
}

/// One event's line, handed to the buffer on each `write`.
pub struct Line<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.push(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line { shared: &self.shared, urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        // `Level` orders by verbosity: ERROR < WARN < INFO.
        Line { shared: &self.shared, urgent: *meta.level() <= Level::WARN }
    }
}

/// What tests of logging share.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex, PoisonError};

    use tracing_subscriber::fmt::MakeWriter;

    /// A log sink for tests: the lines written, in memory.
    #[derive(Clone, Default)]
    pub(crate) struct CapturedLines(Arc<Mutex<Vec<u8>>>);

    impl CapturedLines {
        /// What was written so far.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone())
                .unwrap_or_else(|e| panic!("log lines are not UTF-8: {e}"))
        }
    }

    impl Write for CapturedLines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for CapturedLines {
        type Writer = CapturedLines;
        fn make_writer(&'a self) -> CapturedLines {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    type Written = Arc<Mutex<Vec<Vec<u8>>>>;

    fn recording() -> (BatchedStderr, FlushOnDrop, Written) {
        let written: Written = Arc::default();
        let sink = {
            let written = Arc::clone(&written);
            Box::new(move |bytes: &[u8]| written.lock().unwrap().push(bytes.to_vec()))
        };
        let (writer, guard) = BatchedStderr::start_with_sink(sink).unwrap();
        (writer, guard, written)
    }

    fn log(writer: &BatchedStderr, level: Level, line: &str) {
        let shared = &writer.shared;
        let urgent = level <= Level::WARN;
        Line { shared, urgent }.write_all(line.as_bytes()).unwrap();
    }

    fn text(written: &Written) -> String {
        written.lock().unwrap().iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn info_lines_are_written_together_after_the_gather_time() {
        let (writer, _guard, written) = recording();
        for i in 0..100 {
            log(&writer, Level::INFO, &format!("line {i}\n"));
        }
        eventually("the batch is written", || !written.lock().unwrap().is_empty());
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        eventually("every line is written", || text(&written) == expected);
        // Far fewer writes than lines (one, unless this machine paused the test for over 5 ms).
        assert!(written.lock().unwrap().len() < 50, "{} writes", written.lock().unwrap().len());
    }

    #[test]
    fn a_warning_is_written_at_once_after_the_lines_before_it() {
        let (writer, _guard, written) = recording();
        log(&writer, Level::INFO, "first\n");
        log(&writer, Level::WARN, "careful\n");
        // No waiting: the warning's write happened inside the call.
        assert_eq!(text(&written), "first\ncareful\n");
        log(&writer, Level::ERROR, "broken\n");
        assert_eq!(text(&written), "first\ncareful\nbroken\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_logging_thread() {
        let (writer, _guard, written) = recording();
        let line = format!("{}\n", "x".repeat(1023));
        for _ in 0..(MAX_PENDING / line.len()) {
            log(&writer, Level::DEBUG, &line);
        }
        // The line that reaches the cap is written in the call; the writer thread may have taken
        // an earlier part.
        assert_eq!(text(&written).len(), (MAX_PENDING / line.len()) * line.len());
    }

    #[test]
    fn dropping_the_guard_writes_what_is_pending() {
        let (writer, guard, written) = recording();
        log(&writer, Level::INFO, "last words\n");
        drop(guard);
        assert_eq!(text(&written), "last words\n");
        // After the guard, lines are written at once rather than lost.
        log(&writer, Level::INFO, "after\n");
        assert_eq!(text(&written), "last words\nafter\n");
    }

    #[test]
    fn through_tracing_the_level_decides_what_waits() {
        let (writer, _guard, written) = recording();
        let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).without_time().finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("patched");
            tracing::warn!("failed open");
        });
        // The warning was written in its call, after the INFO line logged before it.
        assert_eq!(
            text(&written),
            " INFO podmedic::logging::tests: patched\n WARN podmedic::logging::tests: failed open\n"
        );
    }
}
