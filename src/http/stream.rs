//! Streams an `Answer` to the client through a protocol's encoder: the head waits for
//! Lingma's first event (so a failure before any text still gets its real HTTP status),
//! keep-alives fill Lingma's silences, a failure after the head is an in-stream error event,
//! and a client that went away ends the answer (dropping it sends `chat/stop`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::api::encoder::{Encoder, Frame};
use super::exchange::Exchange;
use super::sse::SseWriter;
use crate::error::{ErrorKind, GatewayError};
use crate::service::{Answer, Poll};

/// Streams the answer, then notes what it measured on the exchange.
pub(crate) fn stream_answer(
    ex: &mut Exchange,
    mut answer: Answer,
    enc: &mut dyn Encoder,
    keepalive: Duration,
) -> Result<(), GatewayError> {
    let result = stream(ex, &mut answer, enc, keepalive);
    ex.answer = Some(answer.stats(ex.started));
    result
}

fn stream(
    ex: &mut Exchange,
    answer: &mut Answer,
    enc: &mut dyn Encoder,
    keepalive: Duration,
) -> Result<(), GatewayError> {
    let first = match answer.next_event() {
        Some(Ok(ev)) => ev,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(GatewayError::new(
                ErrorKind::Upstream,
                "Lingma ended the answer without any event",
            ))
        }
    };
    let Some(mut sse) = open(ex) else {
        ex.status = 499;
        return Ok(());
    };
    let mut frames = enc.start();
    let mut next = Poll::Event(Ok(first));
    loop {
        let last = encode(&ex.id, enc, next, &mut frames);
        let sent = frames.drain(..).try_for_each(|f| match f {
            Frame::Event { name, data } => sse.event(name, &data),
            Frame::Comment(c) => sse.comment(c),
        });
        if let Err(gone) = sent {
            log::info!(
                "{} client went away mid-stream ({}); stopping Lingma's answer",
                ex.id,
                gone.0
            );
            ex.status = 499;
            return Ok(()); // the caller drops `answer`, which sends chat/stop
        }
        if last {
            break;
        }
        // A bug below must not end a stream silently once its head is out: it becomes the
        // protocol's error event (and dropping the answer stops Lingma).
        next = catch_unwind(AssertUnwindSafe(|| answer.poll(Some(keepalive))))
            .unwrap_or_else(|_| Poll::Event(Err(internal_failure())));
    }
    let _ = sse.finish();
    Ok(())
}

/// Writes the stream's head (`None`: the client is already gone).
fn open(ex: &mut Exchange) -> Option<SseWriter> {
    let http10 = ex.is_http10();
    let mut headers = vec![("x-request-id", ex.id.clone())];
    let (out, close) = ex.take_stream_writer();
    if close && !http10 {
        headers.push(("Connection", "close".to_string()));
    }
    SseWriter::start(out, http10, &headers).ok()
}

/// The frames for what the answer gave (`id` is the request's, for the log); true when
/// they end the stream.
fn encode(id: &str, enc: &mut dyn Encoder, next: Poll, frames: &mut Vec<Frame>) -> bool {
    match next {
        Poll::Done => true,
        Poll::Idle => {
            frames.push(enc.keepalive());
            false
        }
        // An encoder bug must not cut the stream silently either.
        Poll::Event(Ok(ev)) => match catch_unwind(AssertUnwindSafe(|| enc.encode(&ev))) {
            Ok(more) => {
                frames.extend(more);
                false
            }
            Err(_) => {
                log::error!("{id} the stream encoder failed on {ev:?}");
                frames.extend(enc.error(&internal_failure()));
                true
            }
        },
        Poll::Event(Err(e)) => {
            log::warn!("{id} stream failed after the head was sent: {}", e.message);
            frames.extend(enc.error(&e));
            true
        }
    }
}

fn internal_failure() -> GatewayError {
    GatewayError::new(
        ErrorKind::Internal,
        "the gateway failed while streaming this answer",
    )
}
