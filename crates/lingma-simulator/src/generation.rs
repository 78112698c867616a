//! One chat turn being generated (`Generation`): which request and session it answers, the
//! connection it writes to, and the signals that end its waits early (`chat/stop`, the
//! connection's end). It is in the `Running` table from `enter` until it is dropped. What it
//! does is in `execute` (the plan's steps) and `native` (Lingma's own tool path).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Receiver};
use serde_json::{json, Value};

use crate::acp_outbox::AcpTurn;
use crate::conn::Conn;
use crate::shared::Shared;

/// One turn being generated; leaves the `Running` table when dropped.
pub(crate) struct Generation {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<Conn>,
    /// Its key in `shared.running`.
    key: u64,
    pub(crate) stopped: Receiver<()>,
    pub(crate) request_id: String,
    pub(crate) session_id: String,
    pub(crate) session_type: String,
    pub(crate) question: String,
    /// Asked with ACP's `session/prompt` (else with `chat/ask`).
    pub(crate) acp: Option<AcpTurn>,
}

/// What a turn answers: the request and its place.
pub(crate) struct Ask {
    pub(crate) request_id: String,
    pub(crate) session_id: String,
    pub(crate) session_type: String,
    pub(crate) question: String,
    pub(crate) acp: Option<AcpTurn>,
}

impl Generation {
    /// Enters the turn into the `Running` table, where `chat/stop` finds it.
    pub(crate) fn enter(shared: &Arc<Shared>, conn: &Arc<Conn>, ask: Ask) -> Generation {
        let entry = shared.running.insert(&ask.request_id, &ask.session_id);
        Self::entered(shared, conn, ask, entry)
    }

    /// Enters the turn unless its session has one running already (`None`).
    pub(crate) fn enter_alone(
        shared: &Arc<Shared>,
        conn: &Arc<Conn>,
        ask: Ask,
    ) -> Option<Generation> {
        let entry = shared
            .running
            .insert_alone(&ask.request_id, &ask.session_id)?;
        Some(Self::entered(shared, conn, ask, entry))
    }

    fn entered(
        shared: &Arc<Shared>,
        conn: &Arc<Conn>,
        ask: Ask,
        (key, stopped): (u64, Receiver<()>),
    ) -> Generation {
        Generation {
            shared: Arc::clone(shared),
            conn: Arc::clone(conn),
            key,
            stopped,
            request_id: ask.request_id,
            session_id: ask.session_id,
            session_type: ask.session_type,
            question: ask.question,
            acp: ask.acp,
        }
    }

    /// Leaves the `Running` table before the turn's last message: a client that has read it
    /// finds the session idle.
    pub(crate) fn leave(&self) {
        self.shared.running.remove(self.key);
    }

    /// The number of the generator thread that runs it (`sim-gen-N`).
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Waits `timeout` (`None`: for ever) unless `chat/stop` arrives or the connection ends.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Wake {
        let closed = self.conn.closed();
        let woke = |stop: bool| if stop { Wake::Stop } else { Wake::Closed };
        match timeout {
            Some(t) => select! {
                recv(self.stopped) -> _ => woke(true),
                recv(closed) -> _ => woke(false),
                default(t) => Wake::Elapsed,
            },
            None => select! {
                recv(self.stopped) -> _ => woke(true),
                recv(closed) -> _ => woke(false),
            },
        }
    }

    /// `fields` plus the `requestId` and `sessionId` every event of the turn carries.
    pub(crate) fn event(&self, mut fields: Value) -> Value {
        fields["requestId"] = json!(self.request_id);
        fields["sessionId"] = json!(self.session_id);
        fields
    }

    /// Writes one line of the simulator log about this request.
    pub(crate) fn log(&self, msg: &str) {
        self.shared
            .log
            .line(&format!("requestId={}: {msg}", self.request_id));
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.shared.running.remove(self.key);
    }
}

/// Why a wait ended.
pub(crate) enum Wake {
    Elapsed,
    Stop,
    Closed,
}
