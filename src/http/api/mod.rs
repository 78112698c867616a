//! The codec layer: each wire protocol (OpenAI Chat Completions, OpenAI Responses,
//! Anthropic Messages) is a `decode` module (request JSON → `model::ChatRequest`) and an
//! `encode` module (`model::Event`s → SSE frames, or the same events folded into the
//! non-stream body), over one shared field reader (`fields`), one place for error
//! envelopes (`errors`) and one encoder shape (`encoder`). Pure functions and values: no
//! sockets, threads or clocks; the routes in `http::chat` drive them.

pub(crate) mod anthropic;
pub(crate) mod encoder;
pub(crate) mod errors;
pub(crate) mod fields;
#[cfg(test)]
mod golden;
pub(crate) mod openai;
pub(crate) mod responses;
pub(crate) mod structured;
