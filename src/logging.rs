//! The process's logger, installed once by `serve`: simplelog's lines (time, level, target,
//! message) on stderr, behind one filter that every record of every level goes through. It
//! keeps two promises whatever a client sends: a record is one line (CR, LF, ESC, every
//! other C0/C1 control, DEL and the Unicode line and bidi controls are written as escapes,
//! so no request line, header, model name or chat text can start a line of its own), and a
//! line holds no secret (the configured ones, in every escaping, and the values of
//! secret-named fields written out in it, are replaced; see `redact::redact_text`). The
//! crates that dump raw bytes at trace (tungstenite's WebSocket frames, Lingma's session
//! tokens in them; ureq's WebDriver requests, the account password in them) are kept out.
//! Runs on whichever thread logs.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{LineWriter, Stderr};

use log::{Log, Metadata, Record};

use crate::redact::{self, Known};

/// Targets (crate names) whose records are dropped at every level.
const QUIET: &[&str] = &["tungstenite", "ureq"];

/// A message buffer this large is dropped after use rather than kept for the next record
/// (a trace line can hold a whole prompt).
const KEEP_BUFFER: usize = 64 * 1024;

thread_local! {
    /// The message being written, reused so an ordinary record allocates nothing here.
    static MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

struct Logger {
    inner: Box<simplelog::WriteLogger<LineWriter<Stderr>>>,
    known: Known,
}

/// Installs the logger at `level`; `secrets` are replaced wherever they show up. A second
/// call changes nothing (the `log` crate takes one logger per process).
pub fn init(level: log::LevelFilter, secrets: &[String]) {
    let cfg = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(log::LevelFilter::Error)
        .set_thread_level(log::LevelFilter::Off)
        .build();
    // simplelog writes a line in pieces; unbuffered, each piece was a syscall of its own (a
    // sixth of the gateway's CPU under load). A LineWriter makes it one write per line.
    let inner = simplelog::WriteLogger::new(level, cfg, LineWriter::new(std::io::stderr()));
    let logger = Logger {
        inner,
        known: Known::new(secrets),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

fn quiet(target: &str) -> bool {
    QUIET.iter().any(|q| target.starts_with(q))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata) && !quiet(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        MESSAGE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                self.write(record, &mut buf);
                if buf.capacity() > KEEP_BUFFER {
                    *buf = String::new();
                }
            }
            // A value being formatted logged something itself.
            Err(_) => self.write(record, &mut String::new()),
        });
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

impl Logger {
    fn write(&self, record: &Record<'_>, buf: &mut String) {
        buf.clear();
        let message = match record.args().as_str() {
            Some(s) => s,
            None => {
                let _ = write!(buf, "{}", record.args());
                buf.as_str()
            }
        };
        let line = clean(message, &self.known);
        self.inner.log(
            &Record::builder()
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .args(format_args!("{line}"))
                .build(),
        );
    }
}

/// A message as it may be written: secrets replaced, then controls escaped. Borrows when
/// neither is there.
pub fn clean<'a>(message: &'a str, known: &Known) -> Cow<'a, str> {
    match redact::redact_text(message, known) {
        Cow::Borrowed(s) => escape_controls(s),
        Cow::Owned(s) => Cow::Owned(escape_controls(&s).into_owned()),
    }
}

/// Characters a terminal or a log reader may take for a line break, a cursor move or a
/// change of direction.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each such character written as `\n`, `\r`, `\t` or `\u{..}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    // Printable ASCII is the common case, and needs no look at characters (checked without
    // a branch per byte, so it vectorizes).
    let printable = text.as_bytes().chunks(32).all(|c| {
        c.iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0x5f))
    });
    if printable || !text.chars().any(must_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_always_one_line_of_printable_text() {
        let forged = "auto\n2025-01-01T00:00:00Z [INFO] access: forged\r\u{1b}[2K\u{7f}\u{85}\u{9b}\u{2028}\u{202e}\0\t";
        let out = clean(forged, &Known::default());
        assert_eq!(
            out,
            "auto\\n2025-01-01T00:00:00Z [INFO] access: forged\\r\\u{1b}[2K\\u{7f}\\u{85}\\u{9b}\\u{2028}\\u{202e}\\u{0}\\t"
        );
        assert!(!out.chars().any(must_escape));
        // Other text, multi-byte included, passes as it is, borrowed.
        for plain in [
            "req_1 POST /v1/chat/completions 200 3ms model=auto",
            "你好 🦀 é",
            "",
        ] {
            assert!(matches!(clean(plain, &Known::default()), Cow::Borrowed(p) if p == plain));
        }
    }

    #[test]
    fn secrets_go_before_escaping_so_a_control_inside_one_cannot_hide_it() {
        let known = Known::new(["sk-a\u{1b}b", "pw-9"]);
        let out = clean("key sk-a\u{1b}b and pw-9\n", &known);
        assert_eq!(out, "key <redacted> and <redacted>\\n");
    }

    #[test]
    fn crates_that_dump_bytes_are_quiet() {
        for t in [
            "tungstenite",
            "tungstenite::protocol",
            "ureq",
            "ureq_proto::client",
        ] {
            assert!(quiet(t), "{t}");
        }
        for t in [
            "access",
            "lingma::wire",
            "lingma_gateway::http",
            "tiny_http",
        ] {
            assert!(!quiet(t), "{t}");
        }
    }
}
