//! The typed configuration `RawConfig::build` produces: what the rest of the gateway reads.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) session_bundle: Option<String>,
    pub(crate) session_bundle_file: Option<PathBuf>,
    pub(crate) instances: usize,
}

impl Account {
    /// Whether auto-login has what it needs.
    pub(crate) fn can_log_in(&self) -> bool {
        !self.username.is_empty() && !self.password.is_empty()
    }
}

/// Auto-login settings.
#[derive(Debug, Clone)]
pub(crate) struct LoginConfig {
    /// How long a positive `auth/status` is trusted.
    pub(crate) recheck: Duration,
    pub(crate) auto: bool,
    pub(crate) headless: bool,
    pub(crate) timeout: Duration,
    pub(crate) max_retry: u32,
    pub(crate) dedicated_domain_url: Option<String>,
    pub(crate) chromium_bin: PathBuf,
    pub(crate) chromedriver_bin: PathBuf,
    /// The login form's fields, for pages that differ from the built-in guesses.
    pub(crate) selectors: crate::login::browser::Selectors,
}

/// Typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) source: Option<PathBuf>,
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) api_keys: Vec<String>,
    pub(crate) log_level: log::LevelFilter,
    pub(crate) max_workers: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) queue_timeout: Duration,
    pub(crate) admin_token: Option<String>,
    pub(crate) metrics_token: Option<String>,
    pub(crate) metrics_public: bool,
    pub(crate) malloc_tuning: bool,
    pub(crate) client_timeout: Duration,
    pub(crate) client_header_timeout: Duration,
    pub(crate) client_body_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_body_bytes: u64,
    pub(crate) client_send_timeout: Duration,
    pub(crate) max_buffered_body_bytes: u64,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) max_prompt_bytes: usize,
    pub(crate) pool_wait: Duration,
    pub(crate) first_token_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) stream_keepalive: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) default_model: String,
    pub(crate) model_aliases: Vec<(String, String)>,
    pub(crate) simulator: bool,
    pub(crate) simulator_first_token_ms: u64,
    pub(crate) simulator_chunk_ms: u64,
    pub(crate) lingma_bin: Option<PathBuf>,
    pub(crate) lingma_work_dir: PathBuf,
    pub(crate) instance_count: usize,
    pub(crate) lingma_socket_port: u16,
    /// Instance N attaches through the N-th directory's discovery file.
    pub(crate) lingma_attach_dirs: Vec<PathBuf>,
    /// The path of the WebSocket upgrade request.
    pub(crate) lingma_ws_path: String,
    pub(crate) lingma_ws_header: Option<WsHeader>,
    pub(crate) lingma_startup_timeout: Duration,
    pub(crate) lingma_rpc_timeout: Duration,
    pub(crate) lingma_write_timeout: Duration,
    pub(crate) lingma_kill_grace: Duration,
    pub(crate) chat_ask_as_request: bool,
    pub(crate) default_ask_mode: AskMode,
    /// Delete Lingma sessions that can no longer be continued (`upstream::cleanup`).
    pub(crate) lingma_delete_sessions: bool,
    pub(crate) lingma_dialect: DialectChoice,
    pub(crate) tools: crate::tools::ToolPolicy,
    pub(crate) session_reuse: bool,
    pub(crate) session_cache_max_entries: usize,
    pub(crate) session_cache_ttl: Duration,
    pub(crate) responses_store_max_entries: usize,
    pub(crate) responses_store_max_bytes: usize,
    pub(crate) responses_store_ttl: Duration,
    pub(crate) login: LoginConfig,
    /// In name order; instance i belongs to `instance_accounts()[i]`.
    pub(crate) accounts: Vec<Account>,
}

impl Config {
    /// Every configured secret that could be pasted into a request or show up in a log
    /// line: the API keys, the admin and metrics tokens, the accounts' passwords, the
    /// WebSocket header's value (a file's as read at startup). (Session
    /// bundles are secrets too, but are never logged and are too large to look for in every
    /// line.)
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.api_keys
            .iter()
            .chain(&self.admin_token)
            .chain(&self.metrics_token)
            .cloned()
            .chain(self.accounts.iter().map(|a| a.password.clone()))
            .chain(self.lingma_ws_header.iter().map(|h| h.value.clone()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The account owning each instance, in instance order (empty without accounts).
    pub(crate) fn instance_accounts(&self) -> Vec<&Account> {
        self.accounts
            .iter()
            .flat_map(|a| std::iter::repeat_n(a, a.instances))
            .collect()
    }
}

/// A header every WebSocket upgrade to Lingma carries (`lingma_ws_header`): the Qoder CN
/// sidecar refuses a connection without its `Cosy-MachineToken`. The value is a secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WsHeader {
    pub(crate) name: String,
    /// `lingma_ws_header_value`, or the file's token as it was at startup.
    pub(crate) value: String,
    /// `lingma_ws_header_file`, read again before each connection: a runtime may renew it.
    pub(crate) file: Option<PathBuf>,
}

impl std::fmt::Debug for WsHeader {
    /// Never shows the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsHeader")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("file", &self.file)
            .finish()
    }
}

impl WsHeader {
    /// The value to send now: the file's current token, else (unreadable meanwhile) the
    /// last one known, with the reason (which never holds the value).
    pub(crate) fn current(&self) -> (String, Option<String>) {
        match &self.file {
            None => (self.value.clone(), None),
            Some(path) => match read_token_file(path) {
                Ok(v) => (v, None),
                Err(e) => (self.value.clone(), Some(e)),
            },
        }
    }
}

/// The token a header file holds: a JSON object's `"token"` (the Qoder CN runtime's
/// `cache/machine_token.json` is `{"token", "type", ...}`), else the whole text trimmed. The
/// error never quotes the file's text.
pub(crate) fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => match map.get("token") {
            Some(serde_json::Value::String(t)) => t.trim().to_string(),
            _ => {
                return Err(format!(
                    "{} is a JSON object without a \"token\" string",
                    path.display()
                ))
            }
        },
        _ => text.trim().to_string(),
    };
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    if !token
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "{}: its token holds a character a header cannot carry",
            path.display()
        ));
    }
    Ok(token)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskMode {
    Chat,
    Agent,
}

impl AskMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AskMode::Chat => "chat",
            AskMode::Agent => "agent",
        }
    }
}

/// `lingma_dialect`: which of Lingma's two dialects the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialectChoice {
    /// Decided per instance from what the runtime answers to `initialize`.
    Auto,
    Cosy,
    Acp,
}

impl DialectChoice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DialectChoice::Auto => "auto",
            DialectChoice::Cosy => "cosy",
            DialectChoice::Acp => "acp",
        }
    }
}
