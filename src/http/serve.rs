//! One request on a worker thread, from its head to its last byte and its access line: the
//! handler runs under `catch_unwind`, so a panic becomes a 500 in the route's protocol
//! rather than a dead worker.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::exchange::Exchange;
use super::routes;
use super::state::HttpState;
use crate::error::{ErrorKind, GatewayError};

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
