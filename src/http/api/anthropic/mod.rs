//! Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`) on the wire.

pub(crate) mod decode;
pub(crate) mod encode;
