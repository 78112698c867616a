//! OpenAI Responses (`/v1/responses`) on the wire: the request (`decode`, with its `tools`
//! and input `items`) and the answer (`encode`).

pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod items;
pub(crate) mod tools;
