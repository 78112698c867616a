//! Backpressure for chat routes: at most `gateway_max_in_flight` chats run at once; more wait
//! in a queue (holding their worker thread) up to `gateway_queue_timeout_sec`, then get 429
//! with `Retry-After`. Health, metrics and admin routes never pass through it. Waiters are
//! woken one per freed slot; newcomers queue behind waiters rather than overtaking them,
//! though the order among waiters is the condition variable's, not strictly first-come.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, GatewayError};

/// Claude Code gives up on a longer `Retry-After`.
pub(crate) const MAX_RETRY_AFTER: u64 = 60;

pub(crate) struct Gate {
    max: usize,
    timeout: Duration,
    state: Mutex<Counts>,
    freed: Condvar,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Chats holding a slot.
    pub(crate) running: usize,
    /// Chats waiting for one.
    pub(crate) queued: usize,
}

/// A slot, given back on drop.
pub(crate) struct Permit<'a> {
    gate: &'a Gate,
}

impl Gate {
    pub(crate) fn new(max: usize, timeout: Duration) -> Self {
        Gate {
            max: max.max(1),
            timeout,
            state: Mutex::new(Counts::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn counts(&self) -> Counts {
        *self.lock()
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes a slot, waiting in the queue up to the timeout; a 429 after that.
    pub(crate) fn enter(&self) -> Result<Permit<'_>, GatewayError> {
        let mut g = self.lock();
        if g.running < self.max && g.queued == 0 {
            g.running += 1;
            return Ok(Permit { gate: self });
        }
        let deadline = Instant::now() + self.timeout;
        g.queued += 1;
        loop {
            if g.running < self.max {
                g.queued -= 1;
                g.running += 1;
                return Ok(Permit { gate: self });
            }
            let now = Instant::now();
            if now >= deadline {
                g.queued -= 1;
                return Err(self.overloaded());
            }
            g = self
                .freed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn overloaded(&self) -> GatewayError {
        let retry = self.timeout.as_secs().clamp(1, MAX_RETRY_AFTER);
        GatewayError::new(
            ErrorKind::RateLimited,
            format!(
                "The gateway is running its maximum of {} chat requests and this one waited {}s for a slot; retry after {retry}s.",
                self.max,
                self.timeout.as_secs()
            ),
        )
        .with_code("gateway_overloaded")
        .retry_after(retry)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.gate.lock().running -= 1;
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn over_the_cap_waits_then_is_refused_with_a_bounded_retry_after() {
        let gate = Gate::new(1, Duration::ZERO);
        let p = gate.enter().unwrap();
        let e = gate.enter().err().unwrap();
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after, Some(1));
        drop(p);
        assert!(gate.enter().is_ok());
        let long = Gate::new(1, Duration::from_secs(3600));
        assert_eq!(long.overloaded().retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn a_freed_slot_goes_to_a_waiter() {
        let gate = Arc::new(Gate::new(1, Duration::from_secs(30)));
        let p = gate.enter().unwrap();
        let g2 = Arc::clone(&gate);
        let waiter = std::thread::spawn(move || g2.enter().map(|_| ()).is_ok());
        while gate.counts().queued == 0 {
            std::thread::yield_now();
        }
        drop(p);
        assert!(waiter.join().unwrap());
        assert_eq!(gate.counts(), Counts::default());
    }
}
