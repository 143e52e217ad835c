//! The fields of a plain-text log line, written as tracing-subscriber's default formatter writes
//! them, at a fraction of its cost.
//!
//! `podmedic serve` writes a line of twelve fields for each admission it patched. The default
//! formatter writes each field with a `write!` of three painted arguments (`{}{}{:?}`: the name,
//! `=`, the value), which goes through `core::fmt` three times and through a dynamic call for
//! each piece: 1,300 instructions and about 20 mispredicted indirect branches per field, 15,600
//! instructions per admission line (callgrind, BENCHMARKS.md). [`PlainFields`] writes the name, the
//! `=` and the common values (numbers, booleans, strings that need no escaping) directly, and
//! hands everything else to the default formatter, so the text is the same byte for byte (a test
//! compares the two on every kind of value).
//!
//! Used only when the output has no ANSI colours (a terminal gets the default formatter, whose
//! italics and dimming this does not reproduce) and not for JSON lines (their own formatter).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// A [`FormatFields`] for plain text that writes what tracing-subscriber's `DefaultFields` writes.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor { writer, is_empty: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.finish()
    }
}

/// Writes fields as `name=value`, separated by single spaces.
struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// Nothing written yet: the next field needs no space before it.
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Whether this field is written here; the others (the message, raw identifiers, `log.*`
    /// metadata, errors, and anything on a writer with ANSI colours) go to the default visitor.
    fn writes(&self, field: &Field) -> bool {
        let name = field.name();
        self.result.is_ok()
            && !self.writer.has_ansi_escapes()
            && name != "message"
            && !name.starts_with("r#")
            && !name.starts_with("log.")
    }

    /// The separating space and `name=`.
    fn begin(&mut self, field: &Field) {
        if self.is_empty {
            self.is_empty = false;
        } else if let Err(e) = self.writer.write_char(' ') {
            self.result = Err(e);
            return;
        }
        self.result = self.writer.write_str(field.name()).and_then(|()| self.writer.write_char('='));
    }

    /// Records one field with tracing-subscriber's own visitor, keeping the spacing.
    fn default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        // The default visitor writes every field it is given, except `log.*` metadata.
        self.is_empty = false;
    }

    fn write_str(&mut self, text: &str) {
        if self.result.is_ok() {
            self.result = self.writer.write_str(text);
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.writes(field) {
            return self.default(|v| v.record_str(field, value));
        }
        self.begin(field);
        // `{:?}` of a string: quoted, with quotes, backslashes and anything unprintable escaped.
        // A string of printable ASCII without either is just quoted.
        if value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            self.write_str("\"");
            self.write_str(value);
            self.write_str("\"");
        } else if self.result.is_ok() {
            self.result = write!(self.writer, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.writes(field) {
            return self.default(|v| v.record_u64(field, value));
        }
        self.begin(field);
        self.write_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.writes(field) {
            return self.default(|v| v.record_i64(field, value));
        }
        self.begin(field);
        self.write_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.writes(field) {
            return self.default(|v| v.record_bool(field, value));
        }
        self.begin(field);
        self.write_str(if value { "true" } else { "false" });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.default(|v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.writes(field) {
            return self.default(|v| v.record_debug(field, value));
        }
        self.begin(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::testing::CapturedLines;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading the policy failed")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every kind of field value, through `subscriber`; the lines as written.
    fn log_everything(ansi: bool, plain: bool) -> String {
        let captured = CapturedLines::default();
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(ansi)
            .without_time()
            .with_writer(captured.clone());
        let events = || {
            let nested = vec![("a", 1), ("b", 2)];
            let error = Outer(std::io::Error::other("disk \"full\"\n"));
            let plain_error = std::io::Error::other("plain");
            tracing::info!(
                uid = %"5d0c7f3e-2b8a",
                path = "/mutate",
                quoted = "say \"hi\"",
                backslash = r"C:\dir",
                newline = "two\nlines",
                escape = "\u{1b}[31mred",
                unicode = "名前 ü",
                empty = "",
                tab = "a\tb",
                r#type = "raw",
                dry_run = false,
                yes = true,
                count = 0u64,
                max = u64::MAX,
                small = -5i64,
                least = i64::MIN,
                positive = 42i64,
                float = 1.5f64,
                nested = ?nested,
                shown = %"a \"display\" value",
                "admission {} of {}", 1, 2
            );
            tracing::warn!(error = &error as &(dyn std::error::Error + 'static), "with sources");
            tracing::warn!(error = &plain_error as &(dyn std::error::Error + 'static), next = 1u64, "no sources");
            tracing::error!(only = "fields");
            tracing::debug!("message only");
            tracing::info!(message = "explicit message", after = 3u64);
            let span = tracing::info_span!("request", uid = "u-1", n = 7u64, flag = true);
            let _entered = span.enter();
            tracing::info!(inner = "in a span");
        };
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        captured.text()
    }

    #[test]
    fn plain_fields_write_what_the_default_formatter_writes() {
        for ansi in [false, true] {
            let default = log_everything(ansi, false);
            let plain = log_everything(ansi, true);
            assert_eq!(plain, default, "ansi: {ansi}");
            // Seven events; the error source's newline is written as it is, by the default visitor.
            assert_eq!(default.lines().count(), 8, "{default}");
        }
        // And what that is, so the comparison is not between two empty outputs.
        let text = log_everything(false, true);
        assert!(
            text.contains(
                r#"admission 1 of 2 uid=5d0c7f3e-2b8a path="/mutate" quoted="say \"hi\"" backslash="C:\\dir""#
            ),
            "{text}"
        );
        assert!(text.contains(r#"dry_run=false yes=true count=0 max=18446744073709551615 small=-5"#), "{text}");
        assert!(text.contains("least=-9223372036854775808 positive=42"), "{text}");
    }
}
