//! What every handler shares: the chat service, credentials, the backpressure gate, the
//! metrics, the debug ring and the Responses store. Built once by `process::serve`.

use std::sync::Arc;

use super::auth::{ApiKeys, OperatorAuth};
use super::debug_ring::DebugRing;
use super::gate::Gate;
use crate::config::RawConfig;
use crate::metrics::Metrics;
use crate::response_store::ResponseStore;
use crate::service::ChatService;

pub(crate) struct HttpState {
    pub(crate) gw: Arc<ChatService>,
    pub(crate) keys: ApiKeys,
    pub(crate) operators: OperatorAuth,
    pub(crate) gate: Gate,
    pub(crate) metrics: Metrics,
    pub(crate) debug: DebugRing,
    /// Recent `/v1/responses` answers, for `previous_response_id`.
    pub(crate) responses: Arc<ResponseStore>,
    /// `(key, value, origin)` with secrets redacted, as `check-config` prints them.
    pub(crate) effective_config: Vec<(String, String, String)>,
}

impl HttpState {
    pub(crate) fn new(gw: Arc<ChatService>, raw: &RawConfig) -> HttpState {
        let cfg = &gw.cfg;
        HttpState {
            keys: ApiKeys::new(&cfg.api_keys),
            operators: OperatorAuth::new(cfg),
            gate: Gate::new(cfg.max_in_flight, cfg.queue_timeout),
            metrics: Metrics::new(),
            debug: DebugRing::new(cfg.secrets()),
            responses: Arc::new(ResponseStore::new(
                cfg.responses_store_max_entries,
                cfg.responses_store_max_bytes,
                cfg.responses_store_ttl,
            )),
            effective_config: raw.redacted(),
            gw,
        }
    }
}
