//! lingma-gateway: a chunked transfer coding decoder (RFC 9112, 7.1). Pure and bounded: it is
//! fed whatever bytes have arrived and appends the decoded data to a buffer the caller
//! limits. Each chunk-size line (extensions included) is at most `MAX_SIZE_LINE` bytes and
//! the trailer section at most `MAX_TRAILERS`; extensions and trailer fields are checked and
//! discarded. Upstream's decoder read the size line without a bound (a 400 MB size line
//! grew the process by 400 MB) and refused every extension and trailer.

/// Longest chunk-size line, extensions included.
pub(crate) const MAX_SIZE_LINE: usize = 1024;
/// Largest trailer section.
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

#[derive(Debug)]
enum State {
    /// Reading a chunk-size line (what is in `line` so far).
    Size,
    /// Inside a chunk's data: this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF (`true` once the CR was seen).
    DataEnd(bool),
    /// Reading trailer lines after the last chunk.
    Trailers,
    Done,
}

#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            line: Vec::new(),
            trailer_bytes: 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes from `input`, appending data to `out`, and returns how many bytes of `input`
    /// it used: all of them unless the body ended inside `input` (what follows is the next
    /// request).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let n = (left.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.state = match left - n as u64 {
                        0 => State::DataEnd(false),
                        left => State::Data(left),
                    };
                }
                State::DataEnd(seen_cr) => {
                    self.state = match (seen_cr, input[i]) {
                        (false, b'\r') => State::DataEnd(true),
                        (true, b'\n') => State::Size,
                        _ => return Err(Malformed("chunk data is not followed by CRLF")),
                    };
                    i += 1;
                }
                State::Size | State::Trailers => {
                    let Some(nl) = input[i..].iter().position(|&b| b == b'\n') else {
                        self.take_line_part(&input[i..])?;
                        i = input.len();
                        break;
                    };
                    self.take_line_part(&input[i..i + nl + 1])?;
                    i += nl + 1;
                    let line = std::mem::take(&mut self.line);
                    let Some(line) = line.strip_suffix(b"\r\n") else {
                        return Err(Malformed("a chunked-body line ends in a bare LF"));
                    };
                    self.state = match self.state {
                        State::Size => match parse_size_line(line)? {
                            0 => State::Trailers,
                            n => State::Data(n),
                        },
                        _ if line.is_empty() => State::Done,
                        _ => {
                            crate::head::parse_field_line(line)
                                .map_err(|_| Malformed("a trailer field is malformed"))?;
                            State::Trailers
                        }
                    };
                }
            }
        }
        Ok(i)
    }

    /// Adds part of a size or trailer line, within the limits.
    fn take_line_part(&mut self, part: &[u8]) -> Result<(), Malformed> {
        self.line.extend_from_slice(part);
        // The line's CRLF (its CR alone, while the line is unfinished) is not counted.
        let ending = if self.line.ends_with(b"\n") { 2 } else { 1 };
        match self.state {
            State::Size if self.line.len() > MAX_SIZE_LINE + ending => {
                Err(Malformed("a chunk-size line is too long"))
            }
            State::Trailers => {
                self.trailer_bytes += part.len();
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(Malformed("the chunked trailer section is too large"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `chunk-size [ chunk-ext ]`: hexadecimal digits (at most 16), then optional
/// `;name[=value]` extensions, which are ignored.
fn parse_size_line(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Malformed("a chunk size is not a hexadecimal number"));
    }
    if digits > 16 {
        return Err(Malformed("a chunk size is too large"));
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap_or(""), 16)
        .map_err(|_| Malformed("a chunk size is too large"))?;
    let ext = &line[digits..];
    let ext_start = ext.iter().position(|&b| b != b' ' && b != b'\t');
    match ext_start {
        None if ext.is_empty() => {}
        Some(s) if ext[s] == b';' => {
            if ext
                .iter()
                .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
            {
                return Err(Malformed("a chunk extension contains a control byte"));
            }
        }
        _ => {
            return Err(Malformed(
                "a chunk size is followed by something other than an extension",
            ))
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(raw: &[u8], piece: usize) -> Result<(Vec<u8>, usize), Malformed> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for part in raw.chunks(piece.max(1)) {
            used += d.feed(part, &mut out)?;
            if d.is_done() {
                return Ok((out, used));
            }
        }
        Err(Malformed("unfinished"))
    }

    #[test]
    fn every_way_of_cutting_decodes_the_same() {
        let raw = b"5;name=\"v\"\r\nhello\r\n1 ; x\r\n \r\n0\r\nX-Trailer: t\r\n\r\nGET /next";
        let body_len = raw.len() - "GET /next".len();
        for piece in 1..raw.len() {
            let (out, used) = decode_in_pieces(raw, piece).unwrap();
            assert_eq!(out, b"hello ", "piece {piece}");
            // A piece that reaches into the next request stops at the body's end.
            assert_eq!(used, body_len, "piece {piece}");
        }
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.feed(raw, &mut out).unwrap(), body_len);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for raw in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello\r\n0\r\n\r\n",
            b"12345678901234567\r\n",
            b"5 junk\r\n",
            b"5;a\x01b\r\n",
            b"-5\r\n",
            b"0\r\n bad trailer\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
        ] {
            let mut d = ChunkedDecoder::new();
            assert!(
                d.feed(raw, &mut Vec::new()).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn size_lines_and_trailers_are_bounded() {
        let mut d = ChunkedDecoder::new();
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
        assert!(d.feed(&long, &mut Vec::new()).is_err());
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        d.feed(b"0\r\n", &mut out).unwrap();
        let line = b"X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut fed = 0;
        let err = loop {
            match d.feed(line, &mut out) {
                Ok(_) => fed += line.len(),
                Err(e) => break e,
            }
        };
        assert_eq!(err, Malformed("the chunked trailer section is too large"));
        assert!(fed <= MAX_TRAILERS);
    }
}
