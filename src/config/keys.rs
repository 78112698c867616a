//! The table of known keys (section, default, secret, help): what `gateway.ini`, the
//! environment and the flags may set, and what `--help` and `check-config` list.

pub(crate) const ENV_PREFIX: &str = "LINGMA_GATEWAY_";

/// One known key: its section, default and one-line help (also printed by `--help`).
pub(crate) struct KeySpec {
    pub(crate) section: &'static str,
    pub(crate) key: &'static str,
    pub(crate) default: &'static str,
    pub(crate) secret: bool,
    pub(crate) help: &'static str,
}

macro_rules! keys {
    ($( [$section:literal] $key:literal = $default:literal, $secret:literal, $help:literal; )*) => {
        pub(crate) const KEYS: &[KeySpec] = &[ $( KeySpec { section: $section, key: $key, default: $default, secret: $secret, help: $help }, )* ];
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
    ["lingma"] "lingma_attach_dir" = "", false, "comma-separated directories of Lingma runtimes already running and logged in (an IDE's: ~/.lingma for JetBrains, ~/.lingma/vscode/sharedClientCache for VS Code; full paths): instance N attaches to the runtime the N-th one's discovery file (.info.json, else .info) names, reads it again whenever it reconnects (a restarted runtime has a new port), and never stops it";
    ["lingma"] "lingma_ws_path" = "/", false, "path of the WebSocket upgrade request to Lingma (the Qoder CN sidecar wants /ws)";
    ["lingma"] "lingma_ws_header" = "", false, "name of a header every WebSocket upgrade to Lingma carries (the Qoder CN sidecar wants Cosy-MachineToken); its value comes from lingma_ws_header_value or lingma_ws_header_file";
    ["lingma"] "lingma_ws_header_value" = "", true, "that header's value (a secret: never logged)";
    ["lingma"] "lingma_ws_header_file" = "", false, "a file holding that header's value: the \"token\" of a JSON object (as in the Qoder CN runtime's cache/machine_token.json), else its whole text; read at startup and again before each connection";
    ["lingma"] "lingma_startup_timeout" = "60", false, "seconds to wait for a spawned Lingma's .info file and port";
    ["lingma"] "lingma_rpc_timeout" = "20", false, "seconds to wait for a JSON-RPC reply (initialize, auth/status, ...)";
    ["lingma"] "lingma_write_timeout_sec" = "10", false, "seconds a write to Lingma may wait while Lingma takes none of it and sends nothing either (it stopped reading); then the connection is given up, its requests get an error and the instance is restarted";
    ["lingma"] "lingma_kill_grace_sec" = "3", false, "seconds between SIGTERM and SIGKILL when stopping Lingma";
    ["lingma"] "chat_ask_as_request" = "false", false, "send chat/ask as a JSON-RPC request (acked) instead of a notification";
    ["lingma"] "default_ask_mode" = "chat", false, "chat/ask mode: chat | agent";
    ["lingma"] "lingma_delete_sessions" = "true", false, "delete a Lingma session once its conversation can no longer be continued (left the session cache, or a one-shot answer), with chat/deleteSessionById, off the request path; false keeps every session in Lingma's local database";
    ["lingma"] "lingma_dialect" = "auto", false, "how to talk to Lingma: auto (per instance at connect time: cosy when the runtime speaks it, ACP when it speaks only ACP) | cosy (chat/ask) | acp (session/new, session/prompt)";
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
pub(crate) const ACCOUNT_KEYS: &[KeySpec] = &[
    KeySpec { section: "account.NAME", key: "username", default: "", secret: false, help: "the account's user name (for auto-login)" },
    KeySpec { section: "account.NAME", key: "password", default: "", secret: true, help: "its password (for auto-login; never logged)" },
    KeySpec { section: "account.NAME", key: "session_bundle", default: "", secret: true, help: "a session bundle (base64 tar.gz of a logged-in workDir, from POST /internal/session/export), unpacked into each of its instances' workDirs at startup" },
    KeySpec { section: "account.NAME", key: "session_bundle_file", default: "", secret: false, help: "a file holding such a bundle" },
    KeySpec { section: "account.NAME", key: "instances", default: "1", secret: false, help: "how many Lingma instances this account owns" },
];

pub(super) fn account_spec(key: &str) -> Option<&'static KeySpec> {
    ACCOUNT_KEYS.iter().find(|k| k.key == key)
}

pub(super) fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The key `key` of `section` (of any section when `None`).
pub(super) fn spec(section: Option<&str>, key: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|k| k.key == key && section.is_none_or(|s| s == k.section))
}
