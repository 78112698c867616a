//! The state all connections and threads of one simulator process share (`Shared`): the
//! workDir and its login, pacing, sessions, running turns, native tool calls waiting for the
//! client, pending logins and the open connections. It holds tables, not behaviour.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::conn::Clients;
use crate::dialect::Dialect;
use crate::running::Running;
use crate::simlog::SimLog;
use crate::{account, acp_sessions, login, session, tool_calls};

/// The real server version the simulator imitates.
pub(crate) const VERSION: &str = "2.11.1";

/// State shared by all connections of one simulator process.
pub(crate) struct Shared {
    pub(crate) work_dir: PathBuf,
    /// Basename of the workDir, for `[[sim:whoami]]`.
    pub(crate) instance: String,
    pub(crate) pid: u32,
    pub(crate) first_token_ms: u64,
    pub(crate) chunk_ms: u64,
    pub(crate) log: SimLog,
    pub(crate) sessions: session::Store,
    pub(crate) endpoint: Mutex<String>,
    pub(crate) tokens: account::Tokens,
    pub(crate) running: Running,
    /// Native tool calls waiting for the client's approval or result.
    pub(crate) tool_calls: tool_calls::Calls,
    /// The login file's modification time and what it said then.
    pub(crate) account_cache:
        Mutex<Option<(Option<std::time::SystemTime>, Option<account::Account>)>>,
    /// The HTTP port, where the login page is.
    pub(crate) http_port: u16,
    /// What the login page accepts.
    pub(crate) credentials: login::Credentials,
    /// Logins started by `login/generateUrl` and not completed yet.
    pub(crate) logins: login::Logins,
    /// The open WebSocket connections, for pushing `auth/report`.
    pub(crate) clients: Clients,
    /// The dialects this simulator speaks.
    pub(crate) dialect: Dialect,
    /// The models ACP sessions were set to.
    pub(crate) acp_models: acp_sessions::Models,
}

impl Shared {
    /// The current login. The file in the workDir is the truth (it can change under us); it
    /// is parsed again only when its modification time changes.
    pub(crate) fn account(&self) -> Option<account::Account> {
        let mtime = std::fs::metadata(account::user_file(&self.work_dir))
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self.account_cache.lock().unwrap_or_else(|p| p.into_inner());
        match &*cache {
            Some((seen, acct)) if *seen == mtime => acct.clone(),
            _ => {
                let acct = account::load(&self.work_dir);
                *cache = Some((mtime, acct.clone()));
                acct
            }
        }
    }

    /// Stores a new login as user `name` (what `/auth/callback` does) and returns it.
    pub(crate) fn log_in(&self, name: &str) -> io::Result<account::Account> {
        let account = account::Account::logged_in_as(name);
        account::store(&self.work_dir, &account)?;
        self.forget_account();
        Ok(account)
    }

    /// Removes the login (what `auth/logout` does).
    pub(crate) fn log_out(&self) -> io::Result<()> {
        let removed = account::remove(&self.work_dir);
        self.forget_account();
        removed
    }

    /// Makes the next `account()` read the file again: a write within the file system's
    /// timestamp granularity need not change the modification time.
    fn forget_account(&self) {
        *self.account_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
