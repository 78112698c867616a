//! OpenAI Chat Completions (`/v1/chat/completions`) on the wire.

pub(crate) mod decode;
pub(crate) mod encode;
