//! Answers the JSON-RPC messages of one simulator connection, on its reader thread
//! (`sim-conn-N`): requests get their reply in order, `chat/ask` starts a turn (`chat`),
//! `chat/stop` reaches running turns, the client's tool approvals and results go to the
//! generator waiting for them, and replies to the simulator's own requests to the one that
//! sent it. Like the real server, it answers a bad frame or message and stays connected.
//! ACP's `session/*` methods go to `acp`; a method of a dialect not spoken is unknown.

use std::sync::Arc;
use std::thread::JoinHandle;

use lingma_protocol::jsonrpc::{self, method, Decoder, Message};
use serde_json::{json, Value};

use crate::conn::Conn;
use crate::dialect::{Dialect, ACP_METHODS};
use crate::shared::{Shared, VERSION};
use crate::{account, acp, chat, login, models, tool_calls};

/// JSON-RPC error codes the simulator sends.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Answers the messages of one connection (runs on its reader thread).
pub(crate) struct Dispatch {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<Conn>,
}

type RpcResult = Result<Value, (i64, String)>;

impl Dispatch {
    /// Handles every complete frame in `decoder`, collecting the generators started.
    pub(crate) fn decoded(&self, decoder: &mut Decoder, generators: &mut Vec<JoinHandle<()>>) {
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => generators.extend(self.frame(&body)),
                Ok(None) => return,
                Err(e) => {
                    // The real server answers and stays connected; the rest of the message
                    // is dropped.
                    let n = self.conn.number;
                    self.shared
                        .log
                        .line(&format!("connection {n}: bad frame: {e}"));
                    self.reply_error(Value::Null, PARSE_ERROR, "Unknown message header");
                    decoder.clear();
                    return;
                }
            }
        }
    }

    /// Handles one frame body; returns the generator thread a `chat/ask` started.
    fn frame(&self, body: &[u8]) -> Option<JoinHandle<()>> {
        let msg = match Message::parse(body) {
            Ok(msg) => msg,
            Err(reason) => {
                self.shared.log.line(&format!(
                    "connection {}: rejected message: {reason}",
                    self.conn.number
                ));
                let code = if reason.starts_with("invalid JSON") {
                    PARSE_ERROR
                } else {
                    INVALID_REQUEST
                };
                self.reply_error(Value::Null, code, &reason);
                return None;
            }
        };
        match msg {
            Message::Request { id, method, params } => {
                self.log_recv(&method, &params);
                if !params.is_object() {
                    self.reply_error(id, INVALID_PARAMS, "params must be an object");
                    return None;
                }
                self.request(id, &method, params)
            }
            Message::Notification { method, params } => {
                self.log_recv(&method, &params);
                if !params.is_object() {
                    self.shared.log.line(&format!(
                        "ignored notification {method}: params must be an object"
                    ));
                    return None;
                }
                self.notification(&method, params)
            }
            Message::Response { id, result } => {
                // Only `tool/invoke` replies are awaited; the others are ignored.
                if !self.conn.deliver(&id, result) {
                    log::trace!("simulator: ignoring client reply to request {id}");
                }
                None
            }
        }
    }

    fn request(&self, id: Value, name: &str, params: Value) -> Option<JoinHandle<()>> {
        let shared = &self.shared;
        if shared.dialect.refuses(name) {
            self.reply_error(id, METHOD_NOT_FOUND, &format!("unknown method: {name}"));
            return None;
        }
        let result: RpcResult = match name {
            method::INITIALIZE => Ok(initialize_result(shared.dialect)),
            method::AUTH_STATUS => Ok(account::auth_status(
                shared.account().as_ref(),
                &shared.tokens,
            )),
            method::QUERY_MODELS => Ok(models::query_models(shared.account().is_some())),
            method::GET_ENDPOINT => {
                Ok(json!({"endpoint": *shared.endpoint.lock().unwrap_or_else(|p| p.into_inner())}))
            }
            method::UPDATE_ENDPOINT => match params.get("endpoint").and_then(Value::as_str) {
                Some(url) => {
                    *shared.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
                    Ok(json!({"success": true}))
                }
                None => Err((INVALID_PARAMS, "endpoint must be a string".into())),
            },
            method::PING => Ok(json!({"success": true})),
            method::LOGIN_GENERATE_URL => Ok(self.generate_url()),
            method::AUTH_LOGOUT => Ok(self.logout()),
            method::CHAT_ASK => return chat::ask(shared, &self.conn, params, Some(id)),
            method::CHAT_STOP => {
                self.stop(&params);
                Ok(json!({}))
            }
            // Like the real server's `null`, for an unknown id too: deleting is idempotent,
            // so a gateway deleting a session of a process that restarted since is no error.
            method::CHAT_DELETE_SESSION => {
                let id = str_param(&params, "sessionId");
                let deleted = shared.sessions.delete(id);
                shared.log.line(&format!(
                    "chat/deleteSessionById sessionId={id} deleted={deleted} sessions={}",
                    shared.sessions.count()
                ));
                Ok(Value::Null)
            }
            method::CHAT_LIST_SESSIONS => Ok(json!(shared.sessions.list())),
            tool_calls::APPROVE | tool_calls::INVOKE_RESULT => self
                .tool_event(name, &params)
                .map(|()| json!({}))
                .map_err(|e| (INVALID_PARAMS, e)),
            method::CHAT_GET_SESSION => {
                Ok(json!(shared.sessions.get(str_param(&params, "sessionId"))))
            }
            acp_method if ACP_METHODS.contains(&acp_method) => {
                return acp::request(shared, &self.conn, id, acp_method, &params)
            }
            other => Err((METHOD_NOT_FOUND, format!("unknown method: {other}"))),
        };
        match result {
            Ok(value) => self.reply(&jsonrpc::response(id, value)),
            Err((code, message)) => self.reply_error(id, code, &message),
        }
        None
    }

    fn notification(&self, name: &str, params: Value) -> Option<JoinHandle<()>> {
        match name {
            refused if self.shared.dialect.refuses(refused) => self
                .shared
                .log
                .line(&format!("unknown notification {refused} ignored")),
            acp_method if ACP_METHODS.contains(&acp_method) => {
                return acp::notification(&self.shared, &self.conn, acp_method, &params)
            }
            method::CHAT_ASK => return chat::ask(&self.shared, &self.conn, params, None),
            method::CHAT_STOP => self.stop(&params),
            tool_calls::APPROVE | tool_calls::INVOKE_RESULT => {
                if let Err(e) = self.tool_event(name, &params) {
                    self.shared
                        .log
                        .line(&format!("ignored notification {name}: {e}"));
                }
            }
            // Like the real server, which also logs `initialized` as unknown.
            other => self
                .shared
                .log
                .line(&format!("unknown notification {other} ignored")),
        }
        None
    }

    /// `login/generateUrl`: starts a login whose page is on the simulator's HTTP port.
    fn generate_url(&self) -> Value {
        let shared = &self.shared;
        let port = shared.http_port;
        let state = shared.logins.begin();
        let url = format!(
            "http://127.0.0.1:{port}/login?nonce={}&port={port}&state={state}\
             &challenge={}&challenge_method=S256&machine_id={}",
            login::random_token(),
            login::random_token(),
            machine_id(&shared.work_dir),
        );
        shared
            .log
            .line(&format!("login/generateUrl: login {state} pending"));
        json!({"loginUrl": url, "success": true, "errorCode": "", "errorMsg": ""})
    }

    /// `auth/logout`: removes the login from the workDir.
    fn logout(&self) -> Value {
        match self.shared.log_out() {
            Ok(()) => {
                self.shared.log.line("auth/logout");
                json!({"success": true})
            }
            Err(e) => {
                self.shared
                    .log
                    .line(&format!("auth/logout failed: cannot remove the login: {e}"));
                json!({"success": false})
            }
        }
    }

    /// Passes a `tool/call/approve` or `tool/invokeResult` to the generator waiting for it.
    fn tool_event(&self, name: &str, params: &Value) -> Result<(), String> {
        if !self.shared.tool_calls.receive(name, params)? {
            self.shared.log.line(&format!(
                "{name}: no tool call waiting for toolCallId={}",
                str_param(params, "toolCallId")
            ));
        }
        Ok(())
    }

    fn stop(&self, params: &Value) {
        let (request_id, session_id) = (
            str_param(params, "requestId"),
            str_param(params, "sessionId"),
        );
        let stopped = self.shared.running.stop(request_id, session_id);
        self.shared.log.line(&format!(
            "chat/stop requestId={request_id} reached {stopped} generation(s)"
        ));
    }

    fn log_recv(&self, name: &str, params: &Value) {
        let line = match name {
            method::CHAT_ASK => format!(
                "recv chat/ask requestId={} sessionId={} isReply={} model={}",
                str_param(params, "requestId"),
                str_param(params, "sessionId"),
                params
                    .get("isReply")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                chat::model_key(params),
            ),
            method::CHAT_STOP => format!(
                "recv chat/stop requestId={}",
                str_param(params, "requestId")
            ),
            tool_calls::APPROVE => format!(
                "recv {name} toolCallId={} approval={}",
                str_param(params, "toolCallId"),
                params.get("approval").unwrap_or(&Value::Null)
            ),
            tool_calls::INVOKE_RESULT => format!(
                "recv {name} toolCallId={} success={}",
                str_param(params, "toolCallId"),
                params.get("success").unwrap_or(&Value::Null)
            ),
            acp_method if ACP_METHODS.contains(&acp_method) => {
                let turns = self.shared.sessions.turns(str_param(params, "sessionId"));
                acp::recv_line(name, params, turns)
            }
            other => format!("recv {other}"),
        };
        self.shared.log.line(&line);
    }

    fn reply(&self, msg: &Value) {
        if let Err(e) = self.conn.send(msg) {
            log::debug!(
                "simulator: connection {}: reply not sent: {e}",
                self.conn.number
            );
        }
    }

    fn reply_error(&self, id: Value, code: i64, message: &str) {
        self.reply(&jsonrpc::error_response(id, code, message));
    }
}

fn str_param<'a>(params: &'a Value, key: &str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A stable id of this "machine": derived from the workDir, so it differs between instances.
fn machine_id(work_dir: &std::path::Path) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(work_dir.to_string_lossy().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn initialize_result(dialect: Dialect) -> Value {
    let mut result = json!({
        "capabilities": {
            "textDocumentSync": {"openClose": true, "change": 2},
            "workspace": {"workspaceFolders": {"supported": true, "changeNotifications": true}},
        },
        "serverInfo": {"name": "lingma", "version": VERSION},
    });
    if dialect.speaks_acp() {
        acp::initialize_fields(&mut result);
    }
    result
}
