//! The HTTP front. tiny_http accepts connections and parses requests on its own threads;
//! our worker threads (`workers.rs`) take them from its queue. A panic inside a handler
//! becomes a 500 in the route's protocol. Every request ends with one access log line.

pub mod admin;
pub mod admission;
pub mod anthropic;
pub mod auth;
pub mod exchange;
pub mod gate;
#[cfg(test)]
mod golden;
pub mod limits;
pub mod openai;
pub mod origin;
pub mod responses;
pub mod routes;
pub mod sse;
pub mod stream;
pub mod workers;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{ErrorKind, GatewayError};
use exchange::Exchange;
use routes::HttpState;
pub use workers::Workers;

/// Handles one request up to its last byte on the wire; the caller then calls `finish`.
pub(crate) fn serve_one(app: &HttpState, request: tiny_http::Request) -> Exchange {
    let mut ex = Exchange::new(request);
    let outcome = catch_unwind(AssertUnwindSafe(|| routes::handle(app, &mut ex)));
    if outcome.is_err() {
        log::error!("{} handler panicked on {} {}", ex.id, ex.method, ex.path);
        if !ex.responded() {
            ex.error(&GatewayError::new(
                ErrorKind::Internal,
                "Internal gateway error; see the gateway log.",
            ));
        } else {
            ex.status = 500;
        }
    }
    ex
}

/// Every request ends here: its access log line and its metrics.
pub(crate) fn finish(app: &HttpState, ex: &Exchange) {
    access_log(ex);
    let (route, protocol) = routes::labels(&ex.path);
    app.metrics.record(&crate::metrics::RequestRecord {
        route,
        protocol,
        status: ex.status,
        total: ex.started.elapsed(),
        answer: ex.answer,
    });
}

fn access_log(ex: &Exchange) {
    log::info!(
        target: "access",
        "{} {} {} {} {}ms model={} stream={} instance={}",
        ex.id,
        ex.method,
        ex.path,
        ex.status,
        ex.started.elapsed().as_millis(),
        if ex.model.is_empty() { "-" } else { &ex.model },
        ex.stream,
        if ex.instance.is_empty() { "-" } else { &ex.instance },
    );
}
