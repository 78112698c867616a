//! How a response body is framed on the wire: the transfer encoding chosen for it, the
//! header that announces it, and the body written that way.

use crate::common::{HTTPVersion, Header, StatusCode};
use std::cmp::Ordering;
use std::io::Result as IoResult;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// Transfer encoding to use when sending the message.
/// Note that only *supported* encoding are listed here.
#[derive(Copy, Clone)]
pub(crate) enum TransferEncoding {
    Identity,
    Chunked,
}

impl FromStr for TransferEncoding {
    type Err = ();

    fn from_str(input: &str) -> Result<TransferEncoding, ()> {
        if input.eq_ignore_ascii_case("identity") {
            Ok(TransferEncoding::Identity)
        } else if input.eq_ignore_ascii_case("chunked") {
            Ok(TransferEncoding::Chunked)
        } else {
            Err(())
        }
    }
}

/// The header that frames the body: `Transfer-Encoding: chunked`, or the `Content-Length`
/// of an identity body.
pub(crate) fn add_framing_header(
    headers: &mut Vec<Header>,
    transfer_encoding: Option<TransferEncoding>,
    data_length: Option<usize>,
) {
    match transfer_encoding {
        Some(TransferEncoding::Chunked) => {
            headers.push(Header::from_bytes(&b"Transfer-Encoding"[..], &b"chunked"[..]).unwrap())
        }

        Some(TransferEncoding::Identity) => {
            assert!(data_length.is_some());
            let data_length = data_length.unwrap();

            headers.push(
                Header::from_bytes(
                    &b"Content-Length"[..],
                    format!("{}", data_length).as_bytes(),
                )
                .unwrap(),
            )
        }

        _ => (),
    };
}

/// Copies the body to `writer` in the chosen framing (nothing without one: an upgrade).
pub(crate) fn write_body<W: Write>(
    reader: &mut dyn Read,
    mut writer: W,
    transfer_encoding: Option<TransferEncoding>,
    data_length: Option<usize>,
) -> IoResult<()> {
    match transfer_encoding {
        Some(TransferEncoding::Chunked) => {
            use chunked_transfer::Encoder;

            let mut writer = Encoder::new(writer);
            io::copy(reader, &mut writer)?;
        }

        Some(TransferEncoding::Identity) => {
            assert!(data_length.is_some());
            let data_length = data_length.unwrap();

            if data_length >= 1 {
                io::copy(reader, &mut writer)?;
            }
        }

        _ => (),
    }
    Ok(())
}

pub(crate) fn choose_transfer_encoding(
    status_code: StatusCode,
    request_headers: &[Header],
    http_version: &HTTPVersion,
    entity_length: &Option<usize>,
    has_additional_headers: bool,
    chunked_threshold: usize,
) -> TransferEncoding {
    use crate::util;

    // HTTP 1.0 doesn't support other encoding
    if *http_version <= (1, 0) {
        return TransferEncoding::Identity;
    }

    // Per section 3.3.1 of RFC7230:
    // A server MUST NOT send a Transfer-Encoding header field in any response with a status code
    // of 1xx (Informational) or 204 (No Content).
    if status_code.0 < 200 || status_code.0 == 204 {
        return TransferEncoding::Identity;
    }

    // parsing the request's TE header
    let user_request = request_headers
        .iter()
        // finding TE
        .find(|h| h.field.equiv("TE"))
        // getting its value
        .map(|h| h.value.clone())
        // getting the corresponding TransferEncoding
        .and_then(|value| {
            // getting list of requested elements
            let mut parse = util::parse_header_value(value.as_str()); // TODO: remove conversion

            // sorting elements by most priority
            parse.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal));

            // trying to parse each requested encoding
            for value in parse.iter() {
                // q=0 are ignored
                if value.1 <= 0.0 {
                    continue;
                }

                if let Ok(te) = TransferEncoding::from_str(value.0) {
                    return Some(te);
                }
            }

            // encoding not found
            None
        });

    if let Some(user_request) = user_request {
        return user_request;
    }

    // if we have additional headers, using chunked
    if has_additional_headers {
        return TransferEncoding::Chunked;
    }

    // if we don't have a Content-Length, or if the Content-Length is too big, using chunks writer
    if entity_length
        .as_ref()
        .is_none_or(|val| *val >= chunked_threshold)
    {
        return TransferEncoding::Chunked;
    }

    // Identity by default
    TransferEncoding::Identity
}
