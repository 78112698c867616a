//! Which of Lingma's two dialects an instance speaks, decided once per connection right
//! after `initialize` (run by the instance's supervisor, `lingma-sup-<n>`): forced by
//! `lingma_dialect`, or with `auto` from what the runtime answers. A runtime that names an
//! ACP `protocolVersion` or `agentCapabilities` speaks ACP; one that also answers as an LSP
//! server (`capabilities`) may speak both, which a cheap cosy request (`chat/stop` of no
//! chat) settles. Against a runtime that speaks both, cosy is preferred: it is what every
//! runtime of the JetBrains plugin has spoken, so an upgrade changes nothing on them, and a
//! runtime that drops cosy is seen to speak ACP only at its next connect.

use std::time::Duration;

use serde_json::{json, Value};

use super::acp::SessionModels;
use super::connection::{Connection, UpstreamError};
use super::runtime::{Dialect, Runtime};
use crate::config::DialectChoice;
use crate::jsonrpc::method;

/// JSON-RPC's "method not found": the answer of a runtime that lacks a method.
const METHOD_NOT_FOUND: i64 = -32601;

/// The `initialize` params: LSP's InitializeParams, which cosy runtimes read, plus ACP's
/// `protocolVersion` and `clientCapabilities` unless the dialect is forced to cosy (then
/// exactly what the gateway always sent).
pub(crate) fn initialize_params(choice: DialectChoice) -> Value {
    let mut params = json!({
        "processId": std::process::id(),
        "clientInfo": {"name": "lingma-gateway", "version": env!("CARGO_PKG_VERSION")},
        "rootUri": null,
        "capabilities": {},
        "workspaceFolders": [],
    });
    if choice != DialectChoice::Cosy {
        params["protocolVersion"] = json!(1);
        params["clientCapabilities"] = json!({});
    }
    params
}

/// What the `initialize` answer settles.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The dialect, and why.
    Chosen(Dialect, String),
    /// It may speak both: ask it a cosy request (`probe_params`) and see (`after_probe`).
    Probe,
}

/// Judges the `initialize` result under `choice`.
pub(crate) fn judge(choice: DialectChoice, init: &Value) -> Verdict {
    let acp = ["protocolVersion", "agentCapabilities"]
        .into_iter()
        .filter(|k| init.get(k).is_some_and(|v| !v.is_null()))
        .collect::<Vec<_>>();
    let lsp = init.get("capabilities").is_some_and(Value::is_object);
    match choice {
        DialectChoice::Cosy => Verdict::Chosen(Dialect::Cosy, "lingma_dialect = cosy".into()),
        DialectChoice::Acp if acp.is_empty() => Verdict::Chosen(
            Dialect::Acp,
            "lingma_dialect = acp, although initialize names no ACP protocolVersion".into(),
        ),
        DialectChoice::Acp => Verdict::Chosen(Dialect::Acp, "lingma_dialect = acp".into()),
        DialectChoice::Auto if acp.is_empty() => Verdict::Chosen(
            Dialect::Cosy,
            "auto: initialize names no protocolVersion or agentCapabilities, so the runtime speaks cosy only".into(),
        ),
        DialectChoice::Auto if !lsp => Verdict::Chosen(
            Dialect::Acp,
            format!(
                "auto: initialize answers as an ACP agent only ({}, no LSP capabilities)",
                acp.join(", ")
            ),
        ),
        DialectChoice::Auto => Verdict::Probe,
    }
}

/// The probe: `chat/stop` of a chat that does not exist stops nothing, and a runtime
/// without the cosy dialect does not know the method.
pub(crate) fn probe_params() -> Value {
    json!({"requestId": "lingma-gateway-dialect-probe", "sessionId": ""})
}

/// The dialect of a runtime that advertised ACP, from its answer to the probe.
pub(crate) fn after_probe(reply: &Result<Value, UpstreamError>) -> (Dialect, String) {
    match reply {
        Err(UpstreamError::Rpc(e)) if e.code == METHOD_NOT_FOUND => (
            Dialect::Acp,
            "auto: the runtime speaks ACP and not cosy (chat/stop is an unknown method)".into(),
        ),
        Err(UpstreamError::Timeout(_)) => (
            Dialect::Acp,
            "auto: the runtime speaks ACP and did not answer the cosy chat/stop".into(),
        ),
        _ => (
            Dialect::Cosy,
            "auto: the runtime speaks both ACP and cosy; cosy is preferred".into(),
        ),
    }
}

/// `serverInfo.version` of an `initialize` result.
pub(crate) fn version_of(init: &Value) -> String {
    init.pointer("/serverInfo/version")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Runs `initialize` (and `initialized`) on a new connection, decides its dialect, logs
/// which and why, and records it on the connection.
pub(crate) fn handshake(
    conn: &Connection,
    name: &str,
    choice: DialectChoice,
    timeout: Duration,
    cwd: String,
) -> Result<(), String> {
    let init = conn
        .call(method::INITIALIZE, initialize_params(choice), timeout)
        .map_err(|e| format!("initialize: {e}"))?;
    conn.notify(method::INITIALIZED, json!({}))
        .map_err(|e| e.to_string())?;
    let (dialect, why) = match judge(choice, &init) {
        Verdict::Chosen(dialect, why) => (dialect, why),
        Verdict::Probe => {
            let reply = conn.call(method::CHAT_STOP, probe_params(), timeout);
            if let Err(UpstreamError::Disconnected(why)) = &reply {
                return Err(format!("dialect probe: {why}"));
            }
            after_probe(&reply)
        }
    };
    let version = version_of(&init);
    log::info!(
        "[{name}] speaks the {} dialect ({why}); runtime version {}",
        dialect.as_str(),
        if version.is_empty() {
            "unknown"
        } else {
            &version
        }
    );
    conn.set_runtime(Runtime {
        dialect,
        version,
        cwd,
        models: SessionModels::default(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::RpcError;

    /// What the cosy runtime answers (protocol notes §3).
    const COSY: &str = r#"{"capabilities":{"textDocumentSync":1},"serverInfo":{"name":"lingma","version":"2.11.1"}}"#;
    /// What an ACP agent answers (the Agent Client Protocol's InitializeResponse).
    const ACP: &str = r#"{"protocolVersion":1,"agentCapabilities":{"loadSession":false,"promptCapabilities":{"image":true}},"authMethods":[],"serverInfo":{"name":"lingma","version":"0.7.1"}}"#;
    /// A runtime that answers as both.
    const BOTH: &str = r#"{"capabilities":{},"protocolVersion":1,"agentCapabilities":{},"serverInfo":{"name":"lingma","version":"2.12.0"}}"#;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn chosen(choice: DialectChoice, init: &str) -> Option<Dialect> {
        match judge(choice, &v(init)) {
            Verdict::Chosen(d, _) => Some(d),
            Verdict::Probe => None,
        }
    }

    #[test]
    fn auto_chooses_cosy_for_a_cosy_runtime_acp_for_an_acp_agent_and_probes_one_that_may_speak_both(
    ) {
        assert_eq!(chosen(DialectChoice::Auto, COSY), Some(Dialect::Cosy));
        assert_eq!(chosen(DialectChoice::Auto, "{}"), Some(Dialect::Cosy));
        assert_eq!(chosen(DialectChoice::Auto, ACP), Some(Dialect::Acp));
        assert_eq!(
            chosen(DialectChoice::Auto, r#"{"protocolVersion":1}"#),
            Some(Dialect::Acp)
        );
        assert_eq!(chosen(DialectChoice::Auto, BOTH), None);
    }

    #[test]
    fn a_forced_dialect_is_kept_whatever_the_runtime_says() {
        for init in [COSY, ACP, BOTH] {
            assert_eq!(chosen(DialectChoice::Cosy, init), Some(Dialect::Cosy));
            assert_eq!(chosen(DialectChoice::Acp, init), Some(Dialect::Acp));
        }
        let Verdict::Chosen(_, why) = judge(DialectChoice::Acp, &v(COSY)) else {
            panic!("forced");
        };
        assert!(why.contains("although"), "{why}");
    }

    #[test]
    fn the_probe_prefers_cosy_unless_the_runtime_lacks_it() {
        let rpc = |code| {
            Err(UpstreamError::Rpc(RpcError {
                code,
                message: "unknown method: chat/stop".into(),
            }))
        };
        assert_eq!(after_probe(&Ok(json!({}))).0, Dialect::Cosy);
        assert_eq!(after_probe(&rpc(-32602)).0, Dialect::Cosy);
        assert_eq!(after_probe(&rpc(METHOD_NOT_FOUND)).0, Dialect::Acp);
        assert_eq!(
            after_probe(&Err(UpstreamError::Timeout("x".into()))).0,
            Dialect::Acp
        );
        assert!(probe_params().is_object());
    }

    #[test]
    fn initialize_offers_acp_unless_cosy_is_forced_and_the_version_is_read() {
        let cosy = initialize_params(DialectChoice::Cosy);
        assert!(cosy.get("protocolVersion").is_none() && cosy["capabilities"].is_object());
        let auto = initialize_params(DialectChoice::Auto);
        assert_eq!(auto["protocolVersion"], 1);
        assert!(auto["clientCapabilities"].is_object() && auto["processId"].is_number());
        assert_eq!(version_of(&v(COSY)), "2.11.1");
        assert_eq!(version_of(&v(ACP)), "0.7.1");
        assert_eq!(version_of(&json!({})), "");
    }
}
