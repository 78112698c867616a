//! `RawConfig::build`: every key's text typed and checked; errors name the origin and key.

use std::path::PathBuf;
use std::time::Duration;

use super::error::{ConfigError, Origin};
use super::raw::RawConfig;
use super::typed::{
    read_token_file, Account, AskMode, Config, DialectChoice, LoginConfig, WsHeader,
};

impl RawConfig {
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
    pub(crate) fn build(&self) -> Result<Config, ConfigError> {
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
        let accounts = self.accounts()?;
        let instance_count = self.instance_count(&accounts)?;
        let attach_dirs = self.attach_dirs(instance_count)?;
        // Every instance attached: nothing is ever spawned, so no binary is needed.
        if !simulator && lingma_bin.is_none() && attach_dirs.len() < instance_count {
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
            lingma_attach_dirs: attach_dirs,
            lingma_ws_path: self.ws_path()?,
            lingma_ws_header: self.ws_header()?,
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
            lingma_dialect: self.parse("lingma_dialect", "auto, cosy or acp", |s| {
                match s.to_ascii_lowercase().as_str() {
                    "auto" => Some(DialectChoice::Auto),
                    "cosy" => Some(DialectChoice::Cosy),
                    "acp" => Some(DialectChoice::Acp),
                    _ => None,
                }
            })?,
            tools: crate::tools::ToolPolicy {
                allowlist: self.list("tool_allowlist", "tool name")?,
                forward: self.boolean("tool_forward_enabled")?,
                auto_approve: self.boolean("tool_auto_approve")?,
                report_native: self.boolean("tool_report_native")?,
            },
            lingma_delete_sessions: self.boolean("lingma_delete_sessions")?,
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

    /// `instance_count`, or what the accounts own.
    fn instance_count(&self, accounts: &[Account]) -> Result<usize, ConfigError> {
        if accounts.is_empty() {
            return Ok(self.uint("instance_count", 1, 64)? as usize);
        }
        let owned: usize = accounts.iter().map(|a| a.instances).sum();
        let (v, origin) = self.get("instance_count");
        if !matches!(origin, Origin::Default) && v.trim() != owned.to_string() {
            return Err(ConfigError(format!(
                "{origin}: `instance_count` is {v} but the accounts own {owned} instances; remove instance_count or make it match"
            )));
        }
        Ok(owned)
    }

    /// `lingma_attach_dir`: one directory per attached instance, from instance 0 on.
    fn attach_dirs(&self, instance_count: usize) -> Result<Vec<PathBuf>, ConfigError> {
        let dirs = self.list("lingma_attach_dir", "directory")?;
        let origin = self.get("lingma_attach_dir").1;
        if let Some(d) = dirs.iter().find(|d| d.starts_with('~')) {
            return Err(ConfigError(format!(
                "{origin}: `lingma_attach_dir` entry {d:?}: write the full path (~ is not expanded)"
            )));
        }
        if dirs.len() > instance_count {
            return Err(ConfigError(format!(
                "{origin}: `lingma_attach_dir` names {} directories but there are {instance_count} instances; raise instance_count or name fewer",
                dirs.len()
            )));
        }
        if !dirs.is_empty() && self.uint("lingma_socket_port", 0, 65535)? > 0 {
            return Err(ConfigError(format!(
                "{origin}: `lingma_attach_dir` and `lingma_socket_port` both attach instance 0; set one"
            )));
        }
        Ok(dirs.into_iter().map(PathBuf::from).collect())
    }

    /// `lingma_ws_path`: an absolute path without blanks or controls.
    fn ws_path(&self) -> Result<String, ConfigError> {
        self.parse(
            "lingma_ws_path",
            "a path starting with / (such as / or /ws)",
            |s| {
                (s.starts_with('/') && s.bytes().all(|b| b.is_ascii_graphic()))
                    .then(|| s.to_string())
            },
        )
    }

    /// `lingma_ws_header` with its value from `lingma_ws_header_value` or the file named by
    /// `lingma_ws_header_file` (read now, so a missing file stops startup). Errors never
    /// show the value.
    fn ws_header(&self) -> Result<Option<WsHeader>, ConfigError> {
        let name = self.string("lingma_ws_header");
        let value = self.secret("lingma_ws_header_value")?;
        let file = Some(self.string("lingma_ws_header_file")).filter(|f| !f.is_empty());
        let (_, origin) = self.get("lingma_ws_header");
        let value = match (name.is_empty(), value, file) {
            (true, None, None) => return Ok(None),
            (true, _, _) => {
                return Err(ConfigError(format!(
                    "{}: a WebSocket header value is set but `lingma_ws_header` (its name) is not",
                    self.get("lingma_ws_header_value").1
                )))
            }
            (false, Some(_), Some(_)) => {
                return Err(ConfigError(format!(
                    "{origin}: set `lingma_ws_header_value` or `lingma_ws_header_file`, not both"
                )))
            }
            (false, None, None) => {
                return Err(ConfigError(format!(
                    "{origin}: `lingma_ws_header` is set but neither `lingma_ws_header_value` nor `lingma_ws_header_file` gives its value"
                )))
            }
            (false, Some(v), None) => {
                if !v.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                    return Err(ConfigError(format!(
                        "{}: `lingma_ws_header_value` holds a character a header cannot carry (printable ASCII only)",
                        self.get("lingma_ws_header_value").1
                    )));
                }
                (v, None)
            }
            (false, None, Some(f)) => {
                let path = PathBuf::from(f);
                let v = read_token_file(&path).map_err(|e| {
                    let origin = self.get("lingma_ws_header_file").1;
                    ConfigError(format!("{origin}: `lingma_ws_header_file`: {e}"))
                })?;
                (v, Some(path))
            }
        };
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if !name.bytes().all(token) {
            return Err(ConfigError(format!(
                "{origin}: `lingma_ws_header` must be a header name (letters, digits, -), got {name:?}"
            )));
        }
        Ok(Some(WsHeader {
            name,
            value: value.0,
            file: value.1,
        }))
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
