//! Properties of the LSP frame decoder (`jsonrpc::Decoder`) and `jsonrpc::Message::parse`:
//! how a stream is cut into WebSocket messages never changes what it decodes to; garbage and
//! mangled headers give an error or "need more", never a panic, and never buffer past a
//! header's limit unless a frame's header was accepted; oversized lengths are refused as
//! soon as the header is in.

use super::{check, Bytes, Rng};
use crate::jsonrpc::{encode_frame, Decoder, FrameError, Message, MAX_FRAME_BYTES};

/// The decoder's header limit (a private constant of `jsonrpc`).
const MAX_HEADER: usize = 1024;

/// A frame body: JSON-like text, multi-byte UTF-8, or raw bytes (the decoder does not look
/// inside; `\r\n\r\n` in a body must not confuse it).
fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => super::value(rng, 3).to_string().into_bytes(),
        1 => "{\"t\":\"héllo 世界 🦀\"}".as_bytes().to_vec(),
        2 => b"\r\n\r\nContent-Length: 3\r\n\r\n".to_vec(),
        _ => {
            let n = if rng.one_in(10) {
                rng.range(2000, 70_000)
            } else {
                rng.below(300)
            };
            rng.bytes(n)
        }
    }
}

/// A well-formed frame of `body`, its header in one of the spellings peers use.
fn frame(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let len = body.len();
    let mut out = match rng.below(5) {
        0 => return encode_frame(body),
        1 => format!("content-length: {len}\r\n"),
        2 => format!(
            "Content-Length:{len}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
        ),
        3 => format!("Content-Type: application/vscode-jsonrpc\r\nCONTENT-LENGTH:   {len}  \r\n"),
        _ => format!("Content-Length: {}{len}\r\n", "0".repeat(rng.below(20))),
    }
    .into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `stream` cut at random points (some pieces empty, some one byte).
fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut at: Vec<usize> = (0..rng.below(12)).map(|_| rng.below(len + 1)).collect();
    if rng.one_in(4) {
        // Byte by byte through a random window.
        let from = rng.below(len + 1);
        at.extend(from..(from + 64).min(len));
    }
    at.sort_unstable();
    at
}

fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        out.push(&stream[from..c]);
        from = c;
    }
    out
}

#[derive(Debug)]
struct Split {
    stream: Bytes,
    cuts: Vec<usize>,
}

/// What a reader makes of a stream: the bodies, until an error (after which the connection
/// is dropped), and that error.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<FrameError>,
}

/// Feeds `pieces` to a decoder as the Lingma reader does, checking on the way that every
/// body is exactly the bytes after its header and that nothing is buffered beyond a
/// header's limit unless a frame's header was accepted.
fn decode(stream: &[u8], cuts: &[usize]) -> Result<Outcome, String> {
    let mut d = Decoder::new();
    let mut pushed = 0;
    let mut consumed = 0;
    let mut frames = Vec::new();
    for piece in pieces(stream, cuts) {
        d.push(piece);
        pushed += piece.len();
        loop {
            match d.next_frame() {
                Ok(Some(body)) => {
                    let rest = &stream[consumed..pushed];
                    let Some(h) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                        return Err(format!(
                            "a frame came out of {consumed}.. without a header end"
                        ));
                    };
                    let end = consumed + h + 4 + body.len();
                    if end > pushed || stream[consumed + h + 4..end] != body[..] {
                        return Err(format!(
                            "the frame at {consumed} is not the bytes after its header"
                        ));
                    }
                    consumed = end;
                    frames.push(body);
                }
                Ok(None) => break,
                Err(e) => {
                    // One more call must not panic either (the reader may log and ask again).
                    let _ = d.next_frame();
                    return Ok(Outcome {
                        frames,
                        error: Some(e),
                    });
                }
            }
            if d.pending() != pushed - consumed {
                return Err(format!(
                    "pending {} but {} bytes unread",
                    d.pending(),
                    pushed - consumed
                ));
            }
        }
        // A header end may still complete with three more bytes; beyond that, only a frame
        // whose header was accepted is waited for.
        let held = &stream[consumed..pushed];
        if held.len() > MAX_HEADER + 3 {
            let header_end = held.windows(4).position(|w| w == b"\r\n\r\n");
            if header_end.is_none_or(|h| h > MAX_HEADER) {
                return Err(format!(
                    "{} bytes held without an accepted header",
                    held.len()
                ));
            }
        }
        if held.len() > MAX_HEADER + 4 + MAX_FRAME_BYTES {
            return Err(format!("{} bytes held", held.len()));
        }
    }
    Ok(Outcome {
        frames,
        error: None,
    })
}

#[test]
fn frames_decode_the_same_however_the_stream_is_cut() {
    check(
        "frames_decode_the_same_however_the_stream_is_cut",
        300,
        |rng| {
            let bodies: Vec<Vec<u8>> = (0..rng.below(6)).map(|_| body(rng)).collect();
            let stream: Vec<u8> = bodies.iter().flat_map(|b| frame(rng, b)).collect();
            let cuts = cuts(rng, stream.len());
            (
                bodies,
                Split {
                    stream: Bytes(stream),
                    cuts,
                },
            )
        },
        |(bodies, s)| {
            let split = decode(&s.stream.0, &s.cuts)?;
            let whole = decode(&s.stream.0, &[])?;
            let want = Outcome {
                frames: bodies.clone(),
                error: None,
            };
            if split != want || whole != want {
                return Err(format!("split: {split:?}, whole: {whole:?}"));
            }
            Ok(())
        },
    );
}

/// A header mangled the ways a broken or hostile peer might.
fn bad_header(rng: &mut Rng, body_len: usize) -> Vec<u8> {
    let mut h = match rng.below(12) {
        0 => format!("Content-Length: {}\r\n\r\n", rng.next_u64()),
        1 => format!("Content-Length: -{body_len}\r\n\r\n"),
        2 => format!(
            "Content-Length: {body_len}{}\r\n\r\n",
            "9".repeat(rng.range(1, 40))
        ),
        3 => format!(
            "Content-Length: {}{body_len}\r\n\r\n",
            "0".repeat(rng.range(900, 1100))
        ),
        4 => format!(
            "Content-Type: {}\r\nContent-Length: {body_len}\r\n\r\n",
            "a".repeat(rng.range(900, 1100))
        ),
        5 => format!(
            "Content-Length: {body_len}\r\nContent-Length: {}\r\n\r\n",
            rng.below(50)
        ),
        6 => format!("Content-Length: {body_len}\r\nX-Other: 1\r\n\r\n"),
        7 => format!("Content-Length {body_len}\r\n\r\n"),
        8 => format!("Content-Length: {body_len}\n\n"),
        9 => format!("Content-Length: 0x{body_len:x}\r\n\r\n"),
        10 => format!("\r\nContent-Length: {body_len}\r\n\r\n"),
        _ => format!("Content-Length: {body_len}\r\n\r\n"),
    }
    .into_bytes();
    // And sometimes a random byte changed, added or taken away.
    if !h.is_empty() && rng.one_in(2) {
        let at = rng.below(h.len());
        match rng.below(3) {
            0 => h[at] = rng.next_u64() as u8,
            1 => h.insert(at, rng.next_u64() as u8),
            _ => {
                h.remove(at);
            }
        }
    }
    h
}

/// Valid frames, raw garbage and frames with mangled headers, one after the other.
fn hostile_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.range(1, 5) {
        match rng.below(4) {
            0 => {
                let b = body(rng);
                out.extend(frame(rng, &b));
            }
            1 => {
                let n = if rng.one_in(5) {
                    rng.range(1000, 5000)
                } else {
                    rng.below(64)
                };
                out.extend(rng.bytes(n));
            }
            _ => {
                let b = body(rng);
                out.extend(bad_header(rng, b.len()));
                out.extend(b);
            }
        }
    }
    out
}

#[test]
fn garbage_and_mangled_headers_fail_cleanly_however_cut() {
    check(
        "garbage_and_mangled_headers_fail_cleanly_however_cut",
        400,
        |rng| {
            let stream = hostile_stream(rng);
            let cuts = cuts(rng, stream.len());
            Split {
                stream: Bytes(stream),
                cuts,
            }
        },
        |s| {
            let split = decode(&s.stream.0, &s.cuts)?;
            let whole = decode(&s.stream.0, &[])?;
            // The frames are the same; an error is an error whichever check saw it first.
            if split.frames != whole.frames || split.error.is_some() != whole.error.is_some() {
                return Err(format!("split: {split:?}\nwhole: {whole:?}"));
            }
            Ok(())
        },
    );
}

#[test]
fn oversized_lengths_are_refused_once_the_header_is_in() {
    check(
        "oversized_lengths_are_refused_once_the_header_is_in",
        200,
        |rng| {
            let declared = match rng.below(3) {
                0 => (MAX_FRAME_BYTES as u64 + 1 + rng.below(1 << 30) as u64).to_string(),
                1 => rng.next_u64().max(MAX_FRAME_BYTES as u64 + 1).to_string(),
                _ => format!("{}{}", rng.next_u64(), rng.next_u64()),
            };
            let mut stream = format!("Content-Length: {declared}\r\n\r\n").into_bytes();
            let tail = rng.below(100);
            stream.extend(rng.bytes(tail));
            Bytes(stream)
        },
        |s| {
            let mut d = Decoder::new();
            d.push(&s.0);
            match d.next_frame() {
                Err(FrameError::TooLarge(_)) | Err(FrameError::BadLength(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
}

#[test]
fn any_frame_body_parses_to_a_message_or_a_reason() {
    check(
        "any_frame_body_parses_to_a_message_or_a_reason",
        500,
        |rng| {
            let b = if rng.one_in(3) {
                let n = rng.below(100);
                rng.bytes(n)
            } else {
                let mut o = super::object(rng, 3);
                for key in ["jsonrpc", "id", "method", "params", "result", "error"] {
                    if rng.one_in(2) {
                        o.insert(key.into(), super::value(rng, 2));
                    }
                }
                serde_json::Value::Object(o).to_string().into_bytes()
            };
            Bytes(b)
        },
        |b| match Message::parse(&b.0) {
            Ok(Message::Request { id, .. }) | Ok(Message::Response { id, .. }) if id.is_null() => {
                Err("a message with a null id".into())
            }
            Err(reason) if reason.is_empty() => Err("an empty reason".into()),
            _ => Ok(()),
        },
    );
}
