//! What every wire protocol's encoder is: internal `model::Event`s in, and either the SSE
//! frames of a stream (which `http::stream` writes) or, for a non-stream answer, the very
//! same events folded into one body. Each encoder builds its events in one place and a
//! `Form::Body` encoder folds them as a client would instead of sending them, so the two
//! answers cannot drift apart (the golden transcripts check both). Pure.

use serde_json::Value;

use crate::error::GatewayError;
use crate::model::Event;

/// One thing to write on the SSE stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Event {
        name: Option<&'static str>,
        data: String,
    },
    Comment(&'static str),
}

/// What an encoder makes of its events: frames to send, or one body to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `encode` returns the frames; nothing accumulates that the stream does not need.
    Stream,
    /// `encode` returns nothing and folds its events; `body` is the answer.
    Body,
}

/// A wire protocol's form of the internal events.
pub(crate) trait Encoder {
    /// Frames sent right after the head, before the first event.
    fn start(&mut self) -> Vec<Frame> {
        Vec::new()
    }
    fn encode(&mut self, ev: &Event) -> Vec<Frame>;
    /// What fills a silence.
    fn keepalive(&self) -> Frame {
        Frame::Comment("keep-alive")
    }
    /// The frames that end a stream that failed after its head was sent.
    fn error(&mut self, e: &GatewayError) -> Vec<Frame>;
    /// The non-stream body the events encoded so far add up to (a `Form::Body` encoder).
    fn body(&mut self) -> Value;
}

/// A whole answer's events through a `Form::Body` encoder: the non-stream body.
pub(crate) fn fold(enc: &mut dyn Encoder, events: &[Event]) -> Value {
    enc.start();
    for ev in events {
        enc.encode(ev);
    }
    enc.body()
}
