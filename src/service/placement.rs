//! Where a chat runs: on the instance and Lingma session a known conversation continues
//! (session reuse), else on an instance leased by affinity; then through the auth gate,
//! which may trade an instance that is not logged in for one that is. Runs on the worker
//! thread; the pool's lock is held only inside its own calls.

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::Logins;
use crate::error::{ErrorKind, GatewayError, NamedLease};
use crate::model::ChatRequest;
use crate::sessions::{self, Place, SessionCache};
use crate::upstream::pool::{Lease, Pool};

/// The parts of the chat service placement needs.
pub(super) struct Placer<'a> {
    pub(super) pool: &'a Pool,
    pub(super) logins: &'a Arc<Logins>,
    /// `None`: session reuse is off.
    pub(super) sessions: Option<&'a SessionCache>,
    pub(super) pool_wait: Duration,
}

/// Where a chat goes.
pub(super) struct Placed {
    pub(super) lease: Lease,
    /// The Lingma session it continues, and where the conversation's new part starts.
    pub(super) reused: Option<(Place, usize)>,
}

impl Placer<'_> {
    /// Places a chat: on `lease` when given (a retry elsewhere: the session lived on the
    /// failed instance), else on the session `prefix` names when there is one, else on a
    /// leased instance; then through the auth gate.
    pub(super) fn place(
        &self,
        req: &ChatRequest,
        lease: Option<Lease>,
        prefix: Option<(sessions::Key, usize)>,
    ) -> Result<Placed, GatewayError> {
        let continued = match lease {
            Some(_) => None,
            None => prefix.and_then(|p| self.continue_session(p)),
        };
        let (lease, mut reused) = match (continued, lease) {
            (Some((lease, place, start)), _) => (lease, Some((place, start))),
            (None, Some(lease)) => (lease, None),
            (None, None) => (
                self.pool.lease(Some(req.affinity_key()), self.pool_wait)?,
                None,
            ),
        };
        let first = lease.name.clone();
        let lease = self.through_gate(lease)?;
        if lease.name != first {
            reused = None; // the session lives on the other instance: send the whole conversation
        }
        if let Some((place, _)) = &reused {
            log::debug!(
                "session reuse: continuing {} on {} with the new turn only",
                place.session_id,
                lease.name
            );
        }
        Ok(Placed { lease, reused })
    }

    /// The auth gate on a leased instance. One that is not logged in (and cannot be logged
    /// in now) is traded for another ready instance known to be logged in, when there is
    /// one; else the gate's error stands.
    pub(super) fn through_gate(&self, lease: Lease) -> Result<Lease, GatewayError> {
        let Err(e) = self.logins.gate(&lease) else {
            return Ok(lease);
        };
        if e.kind != ErrorKind::Authentication {
            return Err(e);
        }
        let other = self
            .logins
            .logged_in_instances()
            .into_iter()
            .filter(|name| *name != lease.name)
            .filter_map(|name| self.pool.lease_named(&name).ok())
            .find(|other| self.logins.gate(other).is_ok());
        match other {
            Some(other) => {
                log::info!(
                    "{} is not logged in; serving from {} instead",
                    lease.name,
                    other.name
                );
                Ok(other)
            }
            None => Err(e),
        }
    }

    /// A reused session for this conversation, if the cache has one and its instance is
    /// ready: the lease, where the session lives, and where the new part starts.
    fn continue_session(
        &self,
        (key, start): (sessions::Key, usize),
    ) -> Option<(Lease, Place, usize)> {
        let place = self.sessions?.take(&key, |p| {
            self.pool.restarts(&p.instance) == Some(p.restarts)
        })?;
        let lease = self.pool.lease_named(&place.instance).ok()?;
        Some((lease, place, start))
    }
}

/// Leases the instance called `name` if it is ready (operator routes, session reuse).
pub(crate) fn lease_named(pool: &Pool, name: &str) -> Result<Lease, GatewayError> {
    pool.lease_named(name)
        .map_err(|error| NamedLease { name, error }.into())
}
