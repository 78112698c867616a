//! Configuration: `gateway.ini` parsed into typed values, then environment overrides
//! (`LINGMA_GATEWAY_<KEY>`), then command-line flags. The only module that reads the
//! environment. Every error names where the bad value came from and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ENV_PREFIX: &str = "LINGMA_GATEWAY_";

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { path, line } => write!(f, "{}:{}", path.display(), line),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(name) => write!(f, "command-line flag {name}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One known key: its section, default and one-line help (also printed by `--help`).
pub struct KeySpec {
    pub section: &'static str,
    pub key: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub help: &'static str,
}

macro_rules! keys {
    ($( [$section:literal] $key:literal = $default:literal, $secret:literal, $help:literal; )*) => {
        pub const KEYS: &[KeySpec] = &[ $( KeySpec { section: $section, key: $key, default: $default, secret: $secret, help: $help }, )* ];
    };
}

keys! {
    ["gateway"] "host" = "127.0.0.1", false, "address to listen on (beyond loopback, set api_keys: a loud warning says so otherwise)";
    ["gateway"] "port" = "8080", false, "TCP port to listen on (0 = any free port)";
    ["gateway"] "api_keys" = "", true, "comma-separated client keys (Authorization: Bearer or x-api-key); empty = no auth";
    ["gateway"] "log_level" = "info", false, "error | warn | info | debug | trace (trace logs every Lingma frame)";
    ["gateway"] "max_workers" = "256", false, "requests handled at once; more get 503";
    ["gateway"] "gateway_max_in_flight" = "64", false, "chat requests (chat completions, responses, messages) running at once; more wait in a queue (keep it below max_workers: queued requests hold a worker)";
    ["gateway"] "gateway_queue_timeout_sec" = "10", false, "how long a chat request waits in that queue before 429 with Retry-After (0 = refuse at once)";
    ["gateway"] "admin_token" = "", true, "token for /internal/* (Authorization: Bearer); empty = the api_keys (warned); with neither, /internal/* answers only on a loopback host";
    ["gateway"] "metrics_token" = "", true, "token for GET /metrics (Authorization: Bearer); the admin credential works too";
    ["gateway"] "malloc_tuning" = "true", false, "on glibc, start once more with malloc settings that keep RSS flat under long load (one arena, no per-thread cache; see README, Performance); false, or your own GLIBC_TUNABLES, leaves them alone";
    ["gateway"] "metrics_public" = "false", false, "true = GET /metrics needs no credential (warned; for a scraper on a private network)";
    ["gateway"] "client_timeout_sec" = "60", false, "how long a kept-alive connection may wait for its next request (and the longest silence inside a request's head or body) before it is closed";
    ["gateway"] "client_send_timeout_sec" = "15", false, "a response (a whole plain response, or one event of a stream) must reach a client within this long, else the connection is closed: a client that stops reading cannot hold a worker";
    ["gateway"] "client_header_timeout_sec" = "10", false, "a request head must arrive whole within this long of its first byte, else 408 and the connection is closed (slow-client defence)";
    ["gateway"] "client_body_timeout_sec" = "60", false, "a request body must arrive whole within this long of its head, else 408 and the connection is closed";
    ["gateway"] "max_connections" = "1024", false, "open client connections at most; beyond it the longest-waiting connection that serves no request is closed, or the new one gets 503 if all are serving";
    ["gateway"] "max_body_bytes" = "33554432", false, "largest request body accepted; larger gets 413";
    ["gateway"] "max_buffered_body_bytes" = "268435456", false, "memory all request bodies may hold at once (each from its first byte to the end of its response); a body that does not fit gets 503; at least max_body_bytes";
    ["gateway"] "allowed_hosts" = "", false, "with no api_keys: Host names served besides IP addresses and localhost (comma-separated; a leading . matches subdomains); any other Host, and a browser Origin of another site, gets 403 (DNS-rebinding defence)";
    ["gateway"] "max_prompt_bytes" = "8388608", false, "largest prompt sent to Lingma in one chat/ask (the conversation as text); larger gets 400. At most 10485760, so that even escaped as JSON the ask fits the 64 MiB frame limit";
    ["gateway"] "pool_wait_sec" = "15", false, "how long a request waits for a ready Lingma instance before 503";
    ["gateway"] "first_token_timeout_sec" = "120", false, "longest wait for Lingma's first answer event";
    ["gateway"] "idle_timeout_sec" = "120", false, "longest silence between two answer events once streaming";
    ["gateway"] "stream_keepalive_sec" = "15", false, "while Lingma is silent mid-stream, send an SSE keep-alive this often (also detects clients that left)";
    ["gateway"] "shutdown_grace_sec" = "10", false, "on SIGTERM/SIGINT, how long in-flight requests may finish";
    ["gateway"] "session_reuse_enabled" = "true", false, "continue a conversation on the same Lingma session, sending only the new turn (the session keeps the history)";
    ["gateway"] "session_cache_max_entries" = "10000", false, "conversations remembered for reuse (least recently used dropped first); 0 = none";
    ["gateway"] "session_cache_ttl_sec" = "3600", false, "how long a conversation is remembered for reuse";
    ["gateway"] "responses_store_max_entries" = "1000", false, "/v1/responses answers kept for previous_response_id (least recently used dropped first; a conversation's turns are shared, not copied); 0 = none";
    ["gateway"] "responses_store_max_bytes" = "67108864", false, "memory the /v1/responses store may hold: conversations (each shared turn counted once) and response objects; least recently used dropped first; a response that alone would take more is not stored; 0 = none";
    ["gateway"] "responses_store_ttl_sec" = "3600", false, "how long a /v1/responses answer can be continued with previous_response_id";
    ["gateway"] "default_model" = "auto", false, "Lingma model key used when a request names no model (or \"default\")";
    ["gateway"] "model_aliases" = "claude-*=default", false, "extra names for models: name=key pairs, comma-separated; a name may end in * (prefix); key `default` = default_model (the default sends Claude Code's own model names to default_model)";
    ["lingma"] "simulator" = "false", false, "true = spawn the bundled Lingma simulator instead of lingma_bin (tests and demos only)";
    ["lingma"] "simulator_first_token_ms" = "0", false, "simulator only: delay before the first answer chunk";
    ["lingma"] "simulator_chunk_ms" = "0", false, "simulator only: delay between answer chunks";
    ["lingma"] "lingma_bin" = "", false, "path of the real Lingma binary (~/.lingma/bin/<version>/<platform>/Lingma)";
    ["lingma"] "lingma_work_dir" = "./lingma-work", false, "parent of each instance's workDir (instance N uses <dir>/instance-N)";
    ["lingma"] "instance_count" = "1", false, "number of Lingma processes in the pool";
    ["lingma"] "lingma_socket_port" = "0", false, "if > 0 and a Lingma already listens there, instance 0 attaches to it instead of spawning";
    ["lingma"] "lingma_startup_timeout" = "60", false, "seconds to wait for a spawned Lingma's .info file and port";
    ["lingma"] "lingma_rpc_timeout" = "20", false, "seconds to wait for a JSON-RPC reply (initialize, auth/status, ...)";
    ["lingma"] "lingma_write_timeout_sec" = "10", false, "seconds a write to Lingma may wait while Lingma takes none of it and sends nothing either (it stopped reading); then the connection is given up, its requests get an error and the instance is restarted";
    ["lingma"] "lingma_kill_grace_sec" = "3", false, "seconds between SIGTERM and SIGKILL when stopping Lingma";
    ["lingma"] "chat_ask_as_request" = "false", false, "send chat/ask as a JSON-RPC request (acked) instead of a notification";
    ["lingma"] "default_ask_mode" = "chat", false, "chat/ask mode: chat | agent";
    ["login"] "auth_recheck_sec" = "10", false, "how long a positive auth/status is trusted before the gate asks Lingma again";
    ["login"] "auto_login_enabled" = "false", false, "log a logged-out instance in by itself: a headless Chromium (via chromedriver) fills its account's login page";
    ["login"] "auto_login_headless" = "true", false, "run that browser headless (false shows a window: needs a display)";
    ["login"] "auto_login_timeout" = "120", false, "seconds one login attempt may take (browser and confirmation by auth/status)";
    ["login"] "auto_login_max_retry" = "2", false, "attempts after a failed one, before the instance is reported as failed";
    ["login"] "dedicated_domain_url" = "", false, "Lingma endpoint to switch to before logging in (config/updateEndpoint), for dedicated-domain accounts";
    ["login"] "auto_login_username_selector" = "", false, "CSS selector of the login page's user name field (empty = built-in list fitting the simulator and common forms)";
    ["login"] "auto_login_password_selector" = "", false, "CSS selector of its password field (empty = built-in)";
    ["login"] "auto_login_submit_selector" = "", false, "CSS selector of its submit button (empty = built-in; none found: Enter in the password field)";
    ["login"] "auto_login_error_selector" = "", false, "CSS selector of the element that shows a refused login (empty = built-in)";
    ["login"] "chromium_bin" = "/usr/bin/chromium", false, "the Chromium auto-login drives (Debian package chromium)";
    ["login"] "chromedriver_bin" = "/usr/bin/chromedriver", false, "its WebDriver server (Debian package chromium-driver)";
    ["tools"] "tool_allowlist" = "", false, "comma-separated tool names that may pass (client tools offered to the model, Lingma's own tool calls reported); empty = every client tool; * = all";
    ["tools"] "tool_forward_enabled" = "false", false, "also send the client's tools and tool_choice in chat/ask (tools, tool_choice) for Lingma builds that read them";
    ["tools"] "tool_auto_approve" = "true", false, "approve Lingma's own pending tool calls (tool/call/approve); false refuses them";
    ["tools"] "tool_report_native" = "false", false, "report Lingma's own tool calls in answers (Anthropic tool_use + tool_result blocks; OpenAI lingma_tool_events)";
}

/// Keys of an `[account.NAME]` section (NAME: lowercase letters, digits, `_`). From the
/// environment: `LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY>`.
pub const ACCOUNT_KEYS: &[KeySpec] = &[
    KeySpec { section: "account.NAME", key: "username", default: "", secret: false, help: "the account's user name (for auto-login)" },
    KeySpec { section: "account.NAME", key: "password", default: "", secret: true, help: "its password (for auto-login; never logged)" },
    KeySpec { section: "account.NAME", key: "session_bundle", default: "", secret: true, help: "a session bundle (base64 tar.gz of a logged-in workDir, from POST /internal/session/export), unpacked into each of its instances' workDirs at startup" },
    KeySpec { section: "account.NAME", key: "session_bundle_file", default: "", secret: false, help: "a file holding such a bundle" },
    KeySpec { section: "account.NAME", key: "instances", default: "1", secret: false, help: "how many Lingma instances this account owns" },
];

/// One configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub username: String,
    pub password: String,
    pub session_bundle: Option<String>,
    pub session_bundle_file: Option<PathBuf>,
    pub instances: usize,
}

impl Account {
    /// Whether auto-login has what it needs.
    pub fn can_log_in(&self) -> bool {
        !self.username.is_empty() && !self.password.is_empty()
    }
}

/// Auto-login settings.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// How long a positive `auth/status` is trusted.
    pub recheck: Duration,
    pub auto: bool,
    pub headless: bool,
    pub timeout: Duration,
    pub max_retry: u32,
    pub dedicated_domain_url: Option<String>,
    pub chromium_bin: PathBuf,
    pub chromedriver_bin: PathBuf,
    /// The login form's fields, for pages that differ from the built-in guesses.
    pub selectors: crate::login::browser::Selectors,
}

/// Typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub host: IpAddr,
    pub port: u16,
    pub api_keys: Vec<String>,
    pub log_level: log::LevelFilter,
    pub max_workers: usize,
    pub max_in_flight: usize,
    pub queue_timeout: Duration,
    pub admin_token: Option<String>,
    pub metrics_token: Option<String>,
    pub metrics_public: bool,
    pub malloc_tuning: bool,
    pub client_timeout: Duration,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub max_connections: usize,
    pub max_body_bytes: u64,
    pub client_send_timeout: Duration,
    pub max_buffered_body_bytes: u64,
    pub allowed_hosts: Vec<String>,
    pub max_prompt_bytes: usize,
    pub pool_wait: Duration,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
    pub stream_keepalive: Duration,
    pub shutdown_grace: Duration,
    pub default_model: String,
    pub model_aliases: Vec<(String, String)>,
    pub simulator: bool,
    pub simulator_first_token_ms: u64,
    pub simulator_chunk_ms: u64,
    pub lingma_bin: Option<PathBuf>,
    pub lingma_work_dir: PathBuf,
    pub instance_count: usize,
    pub lingma_socket_port: u16,
    pub lingma_startup_timeout: Duration,
    pub lingma_rpc_timeout: Duration,
    pub lingma_write_timeout: Duration,
    pub lingma_kill_grace: Duration,
    pub chat_ask_as_request: bool,
    pub default_ask_mode: AskMode,
    pub tools: crate::tools::ToolPolicy,
    pub session_reuse: bool,
    pub session_cache_max_entries: usize,
    pub session_cache_ttl: Duration,
    pub responses_store_max_entries: usize,
    pub responses_store_max_bytes: usize,
    pub responses_store_ttl: Duration,
    pub login: LoginConfig,
    /// In name order; instance i belongs to `instance_accounts()[i]`.
    pub accounts: Vec<Account>,
}

impl Config {
    /// Every configured secret that could be pasted into a request or show up in a log
    /// line: the API keys, the admin and metrics tokens, the accounts' passwords. (Session
    /// bundles are secrets too, but are never logged and are too large to look for in every
    /// line.)
    pub fn secrets(&self) -> Vec<String> {
        self.api_keys
            .iter()
            .chain(&self.admin_token)
            .chain(&self.metrics_token)
            .cloned()
            .chain(self.accounts.iter().map(|a| a.password.clone()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The account owning each instance, in instance order (empty without accounts).
    pub fn instance_accounts(&self) -> Vec<&Account> {
        self.accounts
            .iter()
            .flat_map(|a| std::iter::repeat_n(a, a.instances))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskMode {
    Chat,
    Agent,
}

impl AskMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AskMode::Chat => "chat",
            AskMode::Agent => "agent",
        }
    }
}

/// Raw `key -> (value, origin)` before typing.
#[derive(Debug, Default, Clone)]
pub struct RawConfig {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// `[account.NAME]` sections: name → key → value.
    accounts: BTreeMap<String, BTreeMap<&'static str, (String, Origin)>>,
    source: Option<PathBuf>,
}

fn account_spec(key: &str) -> Option<&'static KeySpec> {
    ACCOUNT_KEYS.iter().find(|k| k.key == key)
}

fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn spec(section: Option<&str>, key: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|k| k.key == key && section.is_none_or(|s| s == k.section))
}

impl RawConfig {
    pub fn defaults() -> Self {
        let mut raw = RawConfig::default();
        for k in KEYS {
            raw.values
                .insert(k.key, (k.default.to_string(), Origin::Default));
        }
        raw
    }

    /// Parses INI text: `[section]` headers, `key = value`, `;`/`#` comments, blank lines.
    pub fn apply_ini(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let mut section: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: i + 1,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(ConfigError(format!(
                        "{origin}: malformed section header {line:?}"
                    )));
                };
                let name = name.trim();
                if let Some(account) = name.strip_prefix("account.") {
                    if !valid_account_name(account) {
                        return Err(ConfigError(format!(
                            "{origin}: account names use lowercase letters, digits and _ (got [{name}])"
                        )));
                    }
                    self.accounts.entry(account.to_string()).or_default();
                    section = Some(name.to_string());
                    continue;
                }
                if !KEYS.iter().any(|k| k.section == name) {
                    return Err(ConfigError(format!("{origin}: unknown section [{name}]")));
                }
                section = Some(name.to_string());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError(format!(
                    "{origin}: expected `key = value`, found {line:?}"
                )));
            };
            let key = key.trim();
            if let Some(account) = section.as_deref().and_then(|s| s.strip_prefix("account.")) {
                let Some(spec) = account_spec(key) else {
                    return Err(ConfigError(format!(
                        "{origin}: unknown key `{key}` in [account.{account}] (known: username, password, session_bundle, session_bundle_file, instances)"
                    )));
                };
                self.accounts
                    .entry(account.to_string())
                    .or_default()
                    .insert(spec.key, (strip_inline_comment(value).to_string(), origin));
                continue;
            }
            let Some(spec) = spec(section.as_deref(), key) else {
                let hint = match spec(None, key) {
                    Some(s) => format!(" (it belongs in [{}])", s.section),
                    None => String::new(),
                };
                return Err(ConfigError(format!("{origin}: unknown key `{key}`{hint}")));
            };
            self.values
                .insert(spec.key, (strip_inline_comment(value).to_string(), origin));
        }
        self.source = Some(path.to_path_buf());
        Ok(())
    }

    /// Applies `LINGMA_GATEWAY_<KEY>` variables from `vars`.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "CONFIG" {
                continue;
            }
            if let Some(account_key) = rest.strip_prefix("ACCOUNT_") {
                // LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY>; the longest key that fits wins
                // (SESSION_BUNDLE_FILE before SESSION_BUNDLE).
                let found = ACCOUNT_KEYS
                    .iter()
                    .filter_map(|k| {
                        let suffix = format!("_{}", k.key.to_ascii_uppercase());
                        account_key
                            .strip_suffix(&suffix)
                            .map(|n| (n.to_ascii_lowercase(), k))
                    })
                    .max_by_key(|(_, k)| k.key.len());
                let Some((account, spec)) = found.filter(|(n, _)| valid_account_name(n)) else {
                    return Err(ConfigError(format!(
                        "environment variable {name}: expected LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY> with KEY one of USERNAME, PASSWORD, SESSION_BUNDLE, SESSION_BUNDLE_FILE, INSTANCES"
                    )));
                };
                self.accounts
                    .entry(account)
                    .or_default()
                    .insert(spec.key, (value, Origin::Env(name.clone())));
                continue;
            }
            let key = rest.to_ascii_lowercase();
            let Some(spec) = spec(None, &key) else {
                return Err(ConfigError(format!(
                    "environment variable {name}: no such setting `{key}` (see gateway.ini for the list)"
                )));
            };
            self.values
                .insert(spec.key, (value, Origin::Env(name.clone())));
        }
        Ok(())
    }

    /// Sets one key from a command-line flag.
    pub fn set_flag(&mut self, key: &str, value: &str, flag: &str) -> Result<(), ConfigError> {
        let spec = spec(None, key)
            .ok_or_else(|| ConfigError(format!("{flag}: no such setting `{key}`")))?;
        self.values.insert(
            spec.key,
            (value.to_string(), Origin::Flag(flag.to_string())),
        );
        Ok(())
    }

    fn get(&self, key: &str) -> (&str, &Origin) {
        let (v, o) = self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("config key {key} not declared in KEYS"));
        (v.as_str(), o)
    }

    fn parse<T>(
        &self,
        key: &str,
        what: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        let (v, origin) = self.get(key);
        f(v.trim())
            .ok_or_else(|| ConfigError(format!("{origin}: `{key}` must be {what}, got {v:?}")))
    }

    fn uint(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.parse(key, &format!("a whole number from {min} to {max}"), |s| {
            s.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
        })
    }

    fn secs(&self, key: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.uint(key, min, max).map(Duration::from_secs)
    }

    fn boolean(&self, key: &str) -> Result<bool, ConfigError> {
        self.parse(key, "true or false", |s| {
            match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => None,
            }
        })
    }

    fn string(&self, key: &str) -> String {
        self.get(key).0.trim().to_string()
    }

    /// A secret (`admin_token`, `metrics_token`): `None` when empty. One with a control
    /// character could never be sent in a header: an error (the value is not shown).
    fn secret(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let value = self.string(key);
        if value.chars().any(char::is_control) {
            return Err(ConfigError(format!(
                "{}: `{key}` holds a control character, which no client can send in a header",
                self.get(key).1
            )));
        }
        Ok(Some(value).filter(|s| !s.is_empty()))
    }

    /// A comma-separated list. Empty means none; a value that is set but lists nothing
    /// (`","`) is an error, never "none": for `api_keys` that would mean no auth, for
    /// `tool_allowlist` every tool.
    fn list(&self, key: &str, what: &str) -> Result<Vec<String>, ConfigError> {
        let (raw, origin) = self.get(key);
        let items: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if items.is_empty() && !raw.trim().is_empty() {
            return Err(ConfigError(format!(
                "{origin}: `{key}` is set but lists no {what}; leave it empty (`{key} =`) for none"
            )));
        }
        Ok(items)
    }

    /// A value of only blank space is a mistake (an environment variable set to " " looks
    /// set and means nothing): an error naming the key, for every key. An empty value
    /// means the key is not set.
    fn refuse_blank(&self) -> Result<(), ConfigError> {
        let blank = |v: &str| !v.is_empty() && v.trim().is_empty();
        for (key, (v, origin)) in &self.values {
            if blank(v) {
                return Err(ConfigError(format!(
                    "{origin}: `{key}` is only blank space; leave it empty (`{key} =`) to unset it, or give it a value"
                )));
            }
        }
        for (name, values) in &self.accounts {
            for (key, (v, origin)) in values {
                if blank(v) {
                    return Err(ConfigError(format!(
                        "{origin}: `account.{name}.{key}` is only blank space; leave it out to unset it, or give it a value"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Types and validates every value.
    pub fn build(&self) -> Result<Config, ConfigError> {
        self.refuse_blank()?;
        let api_keys = self.list("api_keys", "key")?;
        if api_keys.iter().any(|k| k.chars().any(char::is_control)) {
            return Err(ConfigError(format!(
                "{}: `api_keys` holds a key with a control character, which no client can send in a header",
                self.get("api_keys").1
            )));
        }
        let lingma_bin = Some(self.string("lingma_bin"))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let simulator = self.boolean("simulator")?;
        if !simulator && lingma_bin.is_none() {
            let (_, origin) = self.get("lingma_bin");
            return Err(ConfigError(format!(
                "{origin}: `lingma_bin` is empty: set it to the Lingma binary \
                 (e.g. ~/.lingma/bin/<version>/<platform>/Lingma), or set `simulator = true` \
                 (or pass --simulator) to run against the bundled simulator"
            )));
        }
        let default_model = self.string("default_model");
        if default_model.is_empty() {
            return Err(ConfigError(format!(
                "{}: `default_model` must not be empty",
                self.get("default_model").1
            )));
        }
        let accounts = self.accounts()?;
        let owned: usize = accounts.iter().map(|a| a.instances).sum();
        let instance_count = if accounts.is_empty() {
            self.uint("instance_count", 1, 64)? as usize
        } else {
            let (v, origin) = self.get("instance_count");
            if !matches!(origin, Origin::Default) && v.trim() != owned.to_string() {
                return Err(ConfigError(format!(
                    "{origin}: `instance_count` is {v} but the accounts own {owned} instances; remove instance_count or make it match"
                )));
            }
            owned
        };
        Ok(Config {
            source: self.source.clone(),
            host: self.parse("host", "an IP address such as 127.0.0.1 or 0.0.0.0", |s| {
                s.parse().ok()
            })?,
            port: self.uint("port", 0, 65535)? as u16,
            api_keys,
            log_level: self.parse("log_level", "one of error, warn, info, debug, trace", |s| {
                match s.to_ascii_lowercase().as_str() {
                    "error" => Some(log::LevelFilter::Error),
                    "warn" | "warning" => Some(log::LevelFilter::Warn),
                    "info" => Some(log::LevelFilter::Info),
                    "debug" => Some(log::LevelFilter::Debug),
                    "trace" => Some(log::LevelFilter::Trace),
                    _ => None,
                }
            })?,
            max_workers: self.uint("max_workers", 1, 100_000)? as usize,
            max_in_flight: self.uint("gateway_max_in_flight", 1, 100_000)? as usize,
            queue_timeout: self.secs("gateway_queue_timeout_sec", 0, 3600)?,
            admin_token: self.secret("admin_token")?,
            metrics_token: self.secret("metrics_token")?,
            metrics_public: self.boolean("metrics_public")?,
            malloc_tuning: self.boolean("malloc_tuning")?,
            client_timeout: self.secs("client_timeout_sec", 1, 86_400)?,
            client_header_timeout: self.secs("client_header_timeout_sec", 1, 3600)?,
            client_body_timeout: self.secs("client_body_timeout_sec", 1, 86_400)?,
            max_connections: self.uint("max_connections", 16, 1_000_000)? as usize,
            max_body_bytes: self.uint("max_body_bytes", 1024, 1 << 34)?,
            client_send_timeout: self.secs("client_send_timeout_sec", 1, 3600)?,
            max_buffered_body_bytes: self.buffered_body_bytes()?,
            allowed_hosts: self.allowed_hosts()?,
            max_prompt_bytes: self.uint("max_prompt_bytes", 1024, 10 << 20)? as usize,
            pool_wait: self.secs("pool_wait_sec", 0, 3600)?,
            first_token_timeout: self.secs("first_token_timeout_sec", 1, 86_400)?,
            idle_timeout: self.secs("idle_timeout_sec", 1, 86_400)?,
            stream_keepalive: self.secs("stream_keepalive_sec", 1, 3600)?,
            shutdown_grace: self.secs("shutdown_grace_sec", 0, 3600)?,
            default_model,
            model_aliases: self.aliases()?,
            simulator,
            simulator_first_token_ms: self.uint("simulator_first_token_ms", 0, 600_000)?,
            simulator_chunk_ms: self.uint("simulator_chunk_ms", 0, 600_000)?,
            lingma_bin,
            lingma_work_dir: PathBuf::from(self.string("lingma_work_dir")),
            instance_count,
            lingma_socket_port: self.uint("lingma_socket_port", 0, 65535)? as u16,
            lingma_startup_timeout: self.secs("lingma_startup_timeout", 1, 3600)?,
            lingma_rpc_timeout: self.secs("lingma_rpc_timeout", 1, 3600)?,
            lingma_write_timeout: self.secs("lingma_write_timeout_sec", 1, 3600)?,
            lingma_kill_grace: self.secs("lingma_kill_grace_sec", 0, 600)?,
            chat_ask_as_request: self.boolean("chat_ask_as_request")?,
            default_ask_mode: self.parse("default_ask_mode", "chat or agent", |s| match s {
                "chat" => Some(AskMode::Chat),
                "agent" => Some(AskMode::Agent),
                _ => None,
            })?,
            tools: crate::tools::ToolPolicy {
                allowlist: self.list("tool_allowlist", "tool name")?,
                forward: self.boolean("tool_forward_enabled")?,
                auto_approve: self.boolean("tool_auto_approve")?,
                report_native: self.boolean("tool_report_native")?,
            },
            session_reuse: self.boolean("session_reuse_enabled")?,
            session_cache_max_entries: self.uint("session_cache_max_entries", 0, 10_000_000)?
                as usize,
            session_cache_ttl: self.secs("session_cache_ttl_sec", 1, 30 * 86_400)?,
            responses_store_max_entries: self.uint("responses_store_max_entries", 0, 10_000_000)?
                as usize,
            responses_store_max_bytes: self.uint("responses_store_max_bytes", 0, 1 << 40)? as usize,
            responses_store_ttl: self.secs("responses_store_ttl_sec", 1, 30 * 86_400)?,
            login: LoginConfig {
                recheck: self.secs("auth_recheck_sec", 0, 3600)?,
                auto: self.boolean("auto_login_enabled")?,
                headless: self.boolean("auto_login_headless")?,
                timeout: self.secs("auto_login_timeout", 5, 3600)?,
                max_retry: self.uint("auto_login_max_retry", 0, 20)? as u32,
                dedicated_domain_url: Some(self.string("dedicated_domain_url"))
                    .filter(|s| !s.is_empty()),
                chromium_bin: PathBuf::from(self.string("chromium_bin")),
                chromedriver_bin: PathBuf::from(self.string("chromedriver_bin")),
                selectors: {
                    let builtin = crate::login::browser::Selectors::default();
                    let pick = |key: &str, fallback: String| {
                        Some(self.string(key))
                            .filter(|v| !v.is_empty())
                            .unwrap_or(fallback)
                    };
                    crate::login::browser::Selectors {
                        username: pick("auto_login_username_selector", builtin.username),
                        password: pick("auto_login_password_selector", builtin.password),
                        submit: pick("auto_login_submit_selector", builtin.submit),
                        error: pick("auto_login_error_selector", builtin.error),
                    }
                },
            },
            accounts,
        })
    }

    /// `max_buffered_body_bytes`, which must hold at least one largest body.
    fn buffered_body_bytes(&self) -> Result<u64, ConfigError> {
        let n = self.uint("max_buffered_body_bytes", 1024, 1 << 40)?;
        let max_body = self.uint("max_body_bytes", 1024, 1 << 34)?;
        if n < max_body {
            let (v, origin) = self.get("max_buffered_body_bytes");
            return Err(ConfigError(format!(
                "{origin}: `max_buffered_body_bytes` ({v}) must be at least `max_body_bytes` ({max_body}), or no body of the largest size could ever be read"
            )));
        }
        Ok(n)
    }

    /// `allowed_hosts`: host names (no port), lowercased; `.example.com` matches subdomains.
    fn allowed_hosts(&self) -> Result<Vec<String>, ConfigError> {
        let (v, origin) = self.get("allowed_hosts");
        let mut out = Vec::new();
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bare = name.strip_prefix('.').unwrap_or(name);
            if bare.is_empty()
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(ConfigError(format!(
                    "{origin}: `allowed_hosts` entries must be host names such as gateway.lan or .lan (no port or scheme), got {name:?}"
                )));
            }
            out.push(name.to_ascii_lowercase());
        }
        Ok(out)
    }

    fn aliases(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let origin = self.get("model_aliases").1;
        let mut out = Vec::new();
        for pair in self.list("model_aliases", "alias")? {
            match pair.split_once('=') {
                Some((name, key)) if !name.trim().is_empty() && !key.trim().is_empty() => {
                    out.push((name.trim().to_string(), key.trim().to_string()))
                }
                _ => {
                    return Err(ConfigError(format!(
                        "{origin}: `model_aliases` entries must look like name=key, got {pair:?}"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// `key = value` lines for display, secrets replaced.
    pub fn redacted(&self) -> Vec<(String, String, String)> {
        let shown = |k: &KeySpec, v: &str| {
            if k.secret && !v.is_empty() {
                "<redacted>".to_string()
            } else {
                v.to_string()
            }
        };
        let mut out: Vec<(String, String, String)> = KEYS
            .iter()
            .map(|k| {
                let (v, o) = self.get(k.key);
                (k.key.to_string(), shown(k, v), o.to_string())
            })
            .collect();
        for (name, values) in &self.accounts {
            for k in ACCOUNT_KEYS {
                let (v, o) = values
                    .get(k.key)
                    .map_or((k.default, "default".to_string()), |(v, o)| {
                        (v.as_str(), o.to_string())
                    });
                out.push((format!("account.{name}.{}", k.key), shown(k, v), o));
            }
        }
        out
    }

    /// The typed `[account.NAME]` sections, in name order.
    fn accounts(&self) -> Result<Vec<Account>, ConfigError> {
        let mut out = Vec::new();
        for (name, values) in &self.accounts {
            let get = |key: &str| {
                values
                    .get(key)
                    .map(|(v, o)| (v.trim().to_string(), o.to_string()))
                    .unwrap_or_else(|| (String::new(), format!("[account.{name}]")))
            };
            let (instances, origin) = get("instances");
            let instances = if instances.is_empty() {
                1
            } else {
                instances
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "{origin}: `account.{name}.instances` must be a whole number from 1 to 64, got {instances:?}"
                        ))
                    })?
            };
            let account = Account {
                name: name.clone(),
                username: get("username").0,
                password: get("password").0,
                session_bundle: Some(get("session_bundle").0).filter(|s| !s.is_empty()),
                session_bundle_file: Some(get("session_bundle_file").0)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
                instances,
            };
            if account.username.is_empty() != account.password.is_empty() {
                return Err(ConfigError(format!(
                    "[account.{name}]: set both `username` and `password` (auto-login needs the pair), or neither"
                )));
            }
            if !account.can_log_in()
                && account.session_bundle.is_none()
                && account.session_bundle_file.is_none()
            {
                return Err(ConfigError(format!(
                    "[account.{name}]: needs `username` and `password`, or `session_bundle` / `session_bundle_file`"
                )));
            }
            if account.session_bundle.is_some() && account.session_bundle_file.is_some() {
                return Err(ConfigError(format!(
                    "[account.{name}]: set `session_bundle` or `session_bundle_file`, not both"
                )));
            }
            out.push(account);
        }
        Ok(out)
    }
}

/// Removes a trailing ` ; comment` or ` # comment` (only after whitespace, so values may
/// contain `#` or `;` themselves).
fn strip_inline_comment(value: &str) -> &str {
    let v = value.trim();
    for (i, c) in v.char_indices() {
        if (c == ';' || c == '#') && i > 0 && v[..i].ends_with(char::is_whitespace) {
            return v[..i].trim_end();
        }
    }
    v
}

/// Loads defaults, then the file (if any), then the environment.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let mut raw = RawConfig::defaults();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        raw.apply_ini(&text, path)?;
    }
    raw.apply_env(env)?;
    Ok(raw)
}

/// The config file to read: `--config`, else `LINGMA_GATEWAY_CONFIG`, else `./gateway.ini` if
/// it exists.
pub fn config_path(flag: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(PathBuf::from(p));
    }
    if let Ok(p) = std::env::var(format!("{ENV_PREFIX}CONFIG")) {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let default = PathBuf::from("gateway.ini");
    default.exists().then_some(default)
}

/// The process environment (kept here so no other module reads it).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(ini: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::defaults();
        raw.apply_ini(ini, Path::new("gw.ini"))?;
        raw.apply_env(env.iter().map(|(a, b)| (a.to_string(), b.to_string())))?;
        raw.build()
    }

    #[test]
    fn defaults_need_a_binary_or_the_simulator() {
        let err = build("", &[]).unwrap_err().0;
        assert!(err.contains("lingma_bin"), "{err}");
        let cfg = build("[lingma]\nsimulator = true\n", &[]).unwrap();
        assert_eq!(cfg.port, 8080);
        assert_eq!(cfg.host.to_string(), "127.0.0.1");
        assert!(cfg.api_keys.is_empty());
    }

    #[test]
    fn parses_sections_comments_and_lists() {
        let cfg = build(
            "; comment\n[gateway]\nport = 9000 ; inline\napi_keys = a, b ,\nmodel_aliases = gpt-4o=kmodel, claude-*=auto\n\n[lingma]\nlingma_bin = /opt/Lingma\ninstance_count=3\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.port, 9000);
        assert_eq!(cfg.api_keys, vec!["a", "b"]);
        assert_eq!(
            cfg.model_aliases[1],
            ("claude-*".to_string(), "auto".to_string())
        );
        assert_eq!(cfg.instance_count, 3);
        assert_eq!(cfg.lingma_bin.unwrap(), PathBuf::from("/opt/Lingma"));
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let err = build(
            "[lingma]\nsimulator = true\n\n[gateway]\nport = eighty\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert!(
            err.contains("gw.ini:5") && err.contains("`port`") && err.contains("eighty"),
            "{err}"
        );
    }

    #[test]
    fn accounts_own_instances_and_take_env_overrides() {
        let ini = "[lingma]\nsimulator = true\n[account.work]\nusername = alice\npassword = s3cret-pw\ninstances = 2\n[account.backup]\nsession_bundle = QUJD\n";
        let cfg = build(
            ini,
            &[
                ("LINGMA_GATEWAY_ACCOUNT_WORK_PASSWORD", "from-env-pw"),
                ("LINGMA_GATEWAY_ACCOUNT_SPARE_SESSION_BUNDLE_FILE", "/b.txt"),
            ],
        )
        .unwrap();
        let names: Vec<&str> = cfg.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["backup", "spare", "work"]);
        assert_eq!(cfg.instance_count, 4);
        let owners: Vec<&str> = cfg
            .instance_accounts()
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(owners, ["backup", "spare", "work", "work"]);
        let work = &cfg.accounts[2];
        assert_eq!(
            (work.username.as_str(), work.password.as_str()),
            ("alice", "from-env-pw")
        );
        assert_eq!(
            cfg.accounts[1].session_bundle_file.as_deref(),
            Some(Path::new("/b.txt"))
        );
        let mut raw = RawConfig::defaults();
        raw.apply_ini(ini, Path::new("g.ini")).unwrap();
        let shown = raw.redacted();
        let value = |k: &str| shown.iter().find(|(key, _, _)| key == k).unwrap().1.clone();
        assert_eq!(value("account.work.password"), "<redacted>");
        assert_eq!(value("account.backup.session_bundle"), "<redacted>");
        assert_eq!(value("account.work.username"), "alice");
    }

    #[test]
    fn bad_accounts_are_errors_naming_the_account() {
        for (ini, env, want) in [
            (
                "[account.Work]\nusername = a\npassword = b\n",
                vec![],
                "lowercase",
            ),
            (
                "[account.w]\nuser = a\n",
                vec![],
                "unknown key `user` in [account.w]",
            ),
            (
                "[account.w]\nusername = a\n",
                vec![],
                "set both `username` and `password`",
            ),
            (
                "[account.w]\ninstances = 2\n",
                vec![],
                "needs `username` and `password`",
            ),
            (
                "[account.w]\nusername = a\npassword = b\ninstances = 0\n",
                vec![],
                "account.w.instances",
            ),
            (
                "[lingma]\ninstance_count = 3\n[account.w]\nusername = a\npassword = b\n",
                vec![],
                "the accounts own 1 instances",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_ACCOUNT_W_PASSWD", "x")],
                "LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY>",
            ),
        ] {
            let ini = format!("[lingma]\nsimulator = true\n{ini}").replace(
                "[lingma]\nsimulator = true\n[lingma]\n",
                "[lingma]\nsimulator = true\n",
            );
            let err = build(&ini, &env).unwrap_err().0;
            assert!(err.contains(want), "{ini}: {err}");
        }
    }

    #[test]
    fn set_values_that_mean_nothing_are_errors_naming_the_key() {
        let sim = "[lingma]\nsimulator = true\n";
        for (ini, env, key) in [
            (
                "[gateway]\napi_keys = ,\n",
                vec![],
                "`api_keys` is set but lists no key",
            ),
            (
                "[gateway]\napi_keys = , ,,\n",
                vec![],
                "gw.ini:4: `api_keys`",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_API_KEYS", ",")],
                "LINGMA_GATEWAY_API_KEYS",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_API_KEYS", " ")],
                "`api_keys` is only blank space",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_ADMIN_TOKEN", " ")],
                "`admin_token` is only blank space",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_METRICS_TOKEN", "\t")],
                "`metrics_token`",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_ADMIN_TOKEN", "adm\u{1b}x")],
                "`admin_token` holds a control",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_API_KEYS", "sk-a,sk\nb")],
                "`api_keys` holds a key with a control",
            ),
            (
                "[tools]\ntool_allowlist = ,\n",
                vec![],
                "`tool_allowlist` is set but lists no tool name",
            ),
            (
                "[gateway]\nmodel_aliases = ,\n",
                vec![],
                "`model_aliases` is set but lists no alias",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_DEFAULT_MODEL", "  ")],
                "`default_model`",
            ),
            (
                "[account.main]\nusername = alice\n",
                vec![("LINGMA_GATEWAY_ACCOUNT_MAIN_PASSWORD", " ")],
                "`account.main.password` is only blank space",
            ),
            (
                "",
                vec![("LINGMA_GATEWAY_ACCOUNT_MAIN_SESSION_BUNDLE", "\n")],
                "`account.main.session_bundle` is only blank space",
            ),
        ] {
            let ini = format!("{sim}{ini}");
            let err = build(&ini, &env).unwrap_err().0;
            assert!(err.contains(key), "{ini} {env:?}: {err}");
            assert!(
                !err.contains("adm\u{1b}x") && !err.contains("sk\nb"),
                "{err}"
            );
        }
        // Empty still means not set.
        let cfg = build(
            &format!("{sim}[gateway]\napi_keys =\nadmin_token =\n[tools]\ntool_allowlist =\n"),
            &[
                ("LINGMA_GATEWAY_METRICS_TOKEN", ""),
                ("LINGMA_GATEWAY_MODEL_ALIASES", ""),
            ],
        )
        .unwrap();
        assert!(
            cfg.api_keys.is_empty() && cfg.admin_token.is_none() && cfg.metrics_token.is_none()
        );
        assert!(cfg.tools.allowlist.is_empty() && cfg.model_aliases.is_empty());
    }

    #[test]
    fn unknown_and_misplaced_keys_are_errors() {
        let err = build("[gateway]\nprot = 1\n", &[]).unwrap_err().0;
        assert!(err.contains("unknown key `prot`"), "{err}");
        let err = build("[gateway]\ninstance_count = 1\n", &[]).unwrap_err().0;
        assert!(err.contains("belongs in [lingma]"), "{err}");
        let err = build("[nope]\n", &[]).unwrap_err().0;
        assert!(err.contains("unknown section"), "{err}");
    }

    #[test]
    fn environment_overrides_file_and_is_named_in_errors() {
        let cfg = build(
            "[gateway]\nport = 1\n[lingma]\nsimulator=true\n",
            &[("LINGMA_GATEWAY_PORT", "2")],
        )
        .unwrap();
        assert_eq!(cfg.port, 2);
        let err = build(
            "[lingma]\nsimulator=true\n",
            &[("LINGMA_GATEWAY_INSTANCE_COUNT", "0")],
        )
        .unwrap_err()
        .0;
        assert!(
            err.contains("LINGMA_GATEWAY_INSTANCE_COUNT") && err.contains("instance_count"),
            "{err}"
        );
        let err = build("", &[("LINGMA_GATEWAY_BOGUS", "1")]).unwrap_err().0;
        assert!(err.contains("LINGMA_GATEWAY_BOGUS"), "{err}");
    }

    #[test]
    fn shipped_gateway_ini_documents_every_key_with_its_default() {
        let shipped = include_str!("../gateway.ini");
        for k in KEYS {
            let line = format!(";{} = {}", k.key, k.default);
            assert!(
                shipped.lines().any(|l| l.trim_end() == line.trim_end()),
                "gateway.ini lacks `{line}`"
            );
        }
        // Uncommented, it is a valid configuration (with the simulator chosen).
        let uncommented: String = shipped
            .lines()
            .map(|l| {
                if (l.starts_with(';') && l.contains(" =") && !l.starts_with("; "))
                    || l.starts_with(";[")
                {
                    &l[1..]
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut raw = RawConfig::defaults();
        raw.apply_ini(&uncommented, Path::new("gateway.ini"))
            .unwrap();
        raw.set_flag("simulator", "true", "--simulator").unwrap();
        raw.build().unwrap();
    }

    #[test]
    fn secrets_are_redacted() {
        let mut raw = RawConfig::defaults();
        raw.apply_ini("[gateway]\napi_keys = sk-secret\n", Path::new("x"))
            .unwrap();
        let shown = raw.redacted();
        let line = shown.iter().find(|(k, _, _)| k == "api_keys").unwrap();
        assert_eq!(line.1, "<redacted>");
        assert!(!format!("{shown:?}").contains("sk-secret"));
    }
}
