//! A bundle as text: standard base64, whitespace ignored when decoding.

use base64::Engine as _;

use super::error::BundleError;
use super::limits::MAX_BUNDLE_BYTES;

/// Standard base64 (with padding) of a packed bundle.
pub(crate) fn encode(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Decodes standard base64, ignoring ASCII whitespace (line breaks from mail or terminals).
pub(crate) fn decode(b64: &str) -> Result<Vec<u8>, BundleError> {
    let clean: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if clean.is_empty() {
        return Err(BundleError::Empty);
    }
    // A gzip of at most MAX_BUNDLE_BYTES of tar is at most slightly larger than that
    // (stored deflate blocks); refuse anything clearly bigger before allocating for it.
    let max_raw = MAX_BUNDLE_BYTES + MAX_BUNDLE_BYTES / 64 + 4096;
    if (clean.len() as u64) / 4 * 3 > max_raw {
        return Err(BundleError::TooLarge {
            limit: MAX_BUNDLE_BYTES,
        });
    }
    // Offsets count non-whitespace symbols; offending bytes are not echoed (secret text).
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .map_err(|e| {
            BundleError::Base64(match e {
                base64::DecodeError::InvalidByte(at, _) => {
                    format!("invalid symbol at position {at} (not counting whitespace)")
                }
                base64::DecodeError::InvalidLength(len) => {
                    format!("invalid length ({len} symbols)")
                }
                base64::DecodeError::InvalidLastSymbol(at, _) => {
                    format!("invalid final symbol at position {at} (not counting whitespace)")
                }
                base64::DecodeError::InvalidPadding => "invalid padding".to_string(),
            })
        })
}
