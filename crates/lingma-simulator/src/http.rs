//! The simulator's HTTP port (the real server's login-callback port), served by thread
//! `sim-http`:
//! - `GET /`: a small text page;
//! - `GET /login?state=S`: the login form of a login started by `login/generateUrl`;
//! - `POST /login`: checks the form against the test credentials; right ones redirect to
//!   `/auth/callback?state=S&code=C`, wrong ones show the form again with an error;
//! - `GET /auth/callback?state=S&code=C`: stores the login in the workDir and pushes
//!   `auth/report` to every WebSocket client;
//! - anything else 404.
//!
//! Every page but `GET /` is `text/html; charset=utf-8`. The password is never logged nor
//! written into a page.

use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use lingma_protocol::jsonrpc::method;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::account;
use crate::login::{self, html_escape, loggable, Refused};
use crate::shared::Shared;

const HOME_PAGE: &str = "Lingma simulator\n";
const TITLE: &str = "Lingma simulator login";
/// A login form is a few hundred bytes; anything much bigger is not one.
const MAX_FORM_BYTES: u64 = 64 * 1024;

pub(crate) struct HttpServer {
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `127.0.0.1:port` (0: ephemeral) and returns the server with its real port.
pub(crate) fn bind(port: u16) -> io::Result<(Server, u16)> {
    let server = Server::http(("127.0.0.1", port)).map_err(io::Error::other)?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("HTTP server has no IP address"))?;
    Ok((server, port))
}

impl HttpServer {
    pub(crate) fn spawn(server: Server, shared: Arc<Shared>) -> io::Result<HttpServer> {
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, flag) = (Arc::clone(&server), Arc::clone(&stop));
        let thread = thread::Builder::new()
            .name("sim-http".into())
            .spawn(move || http_loop(&srv, &flag, &shared))?;
        Ok(HttpServer {
            server,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn http_loop(server: &Server, stop: &AtomicBool, shared: &Shared) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv() {
            Ok(mut request) => {
                let response = respond(shared, &mut request);
                if let Err(e) = request.respond(response) {
                    log::debug!("simulator: HTTP response not sent: {e}");
                }
            }
            Err(e) if !stop.load(Ordering::SeqCst) => log::debug!("simulator: HTTP accept: {e}"),
            Err(_) => break,
        }
    }
}

type Page = Response<Cursor<Vec<u8>>>;

fn respond(shared: &Shared, request: &mut Request) -> Page {
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let query = login::decode_form(query);
    let method = request.method().clone();
    match (path, &method) {
        ("/", Method::Get) => Response::from_string(HOME_PAGE)
            .with_header(header("Content-Type", "text/plain; charset=utf-8")),
        ("/login", Method::Get) => login_page(shared, &query),
        ("/login", Method::Post) => login_submit(shared, request),
        ("/auth/callback", Method::Get) => callback(shared, &query),
        ("/login", _) => not_allowed("GET, POST"),
        ("/auth/callback", _) => not_allowed("GET"),
        _ => html(
            404,
            &document(
                "Not found",
                "<p id=\"not-found\" class=\"error\">Not found.</p>\n",
            ),
        ),
    }
}

/// `GET /login?state=S`.
fn login_page(shared: &Shared, query: &[(String, String)]) -> Page {
    let state = login::form_value(query, "state").unwrap_or("");
    if !shared.logins.is_pending(state) {
        shared
            .log
            .line("login page refused: unknown or expired login state");
        return expired();
    }
    shared
        .log
        .line(&format!("login page served (login {state})"));
    html(200, &login_form(state, false))
}

/// `POST /login` with the form.
fn login_submit(shared: &Shared, request: &mut Request) -> Page {
    let urlencoded = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .is_none_or(|h| {
            h.value.as_str().split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !urlencoded {
        return error_page(
            415,
            "bad-request",
            "The login form must be sent as application/x-www-form-urlencoded.",
        );
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_FORM_BYTES + 1)
        .read_to_end(&mut body);
    if let Err(e) = read {
        log::debug!("simulator: login form not read: {e}");
        return error_page(400, "bad-request", "The login form could not be read.");
    }
    if body.len() as u64 > MAX_FORM_BYTES {
        return error_page(413, "bad-request", "The login form is too large.");
    }
    let form = login::decode_form(&String::from_utf8_lossy(&body));
    let field = |name| login::form_value(&form, name).unwrap_or("");
    let (state, user, password) = (field("state"), field("username"), field("password"));
    if !shared.logins.is_pending(state) {
        shared
            .log
            .line("login form refused: unknown or expired login state");
        return expired();
    }
    if !shared.credentials.matches(user, password) {
        shared
            .log
            .line(&format!("login failed for user {}", loggable(user)));
        return html(200, &login_form(state, true));
    }
    let Some(code) = shared.logins.authorize(state, user) else {
        return expired(); // expired between the two checks
    };
    shared
        .log
        .line(&format!("login ok for user {}", loggable(user)));
    let location = format!(
        "/auth/callback?state={}&code={}",
        login::encode_component(state),
        login::encode_component(&code)
    );
    let body = format!(
        "<p id=\"login-redirect\">Logged in; continue to <a href=\"{0}\">{0}</a>.</p>\n",
        html_escape(&location)
    );
    html(302, &document(TITLE, &body)).with_header(header("Location", &location))
}

/// `GET /auth/callback?state=S&code=C`.
fn callback(shared: &Shared, query: &[(String, String)]) -> Page {
    let field = |name| login::form_value(query, name).unwrap_or("");
    let user = match shared.logins.redeem(field("state"), field("code")) {
        Ok(user) => user,
        Err(refused) => {
            let why = match refused {
                Refused::UnknownState => "unknown, expired or already completed login state",
                Refused::BadCode => "wrong login code",
            };
            shared.log.line(&format!("auth/callback refused: {why}"));
            return error_page(
                400,
                "callback-error",
                "This login link is not valid: unknown, expired or already used. \
                 Start the login again.",
            );
        }
    };
    let account = match shared.log_in(&user) {
        Ok(account) => account,
        Err(e) => {
            shared
                .log
                .line(&format!("auth/callback: cannot store the login: {e}"));
            return error_page(500, "callback-error", "The login could not be stored.");
        }
    };
    let name = loggable(&account.name);
    shared
        .log
        .line(&format!("auth/callback: logged in as {name}"));
    let status = account::auth_status(Some(&account), &shared.tokens);
    let sent = shared.clients.notify_all(method::AUTH_REPORT, &status);
    shared
        .log
        .line(&format!("auth/report sent to {sent} client(s)"));
    let body = format!(
        "<p id=\"login-ok\">Logged in as {}. You can close this window.</p>\n",
        html_escape(&account.name)
    );
    html(200, &document(TITLE, &body))
}

/// The login form, with the error line after a wrong user name or password.
fn login_form(state: &str, wrong: bool) -> String {
    let error = if wrong {
        "<p id=\"login-error\" class=\"error\">Wrong user name or password.</p>\n"
    } else {
        ""
    };
    let body = format!(
        "<p>This is the Lingma <strong>simulator</strong>, not Alibaba's login page. \
         Log in with the simulator's test credentials.</p>\n\
         {error}\
         <form id=\"login-form\" method=\"post\" action=\"/login\">\n\
         <input id=\"state\" name=\"state\" type=\"hidden\" value=\"{}\">\n\
         <p><label for=\"username\">User name</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\"></p>\n\
         <p><label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\"></p>\n\
         <p><button id=\"login-submit\" type=\"submit\">Log in</button></p>\n\
         </form>\n",
        html_escape(state)
    );
    document(TITLE, &body)
}

fn expired() -> Page {
    error_page(
        400,
        "login-expired",
        "This login request is unknown or has expired. Start the login again.",
    )
}

fn not_allowed(allow: &str) -> Page {
    error_page(405, "bad-request", "Method not allowed.").with_header(header("Allow", allow))
}

fn error_page(status: u16, id: &str, message: &str) -> Page {
    let body = format!(
        "<p id=\"{id}\" class=\"error\">{}</p>\n",
        html_escape(message)
    );
    html(status, &document(TITLE, &body))
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}} .error{{color:#b00020}}</style>\n\
         </head>\n<body>\n<h1>{title}</h1>\n{body}</body>\n</html>\n"
    )
}

fn html(status: u16, document: &str) -> Page {
    Response::from_string(document)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header("Cache-Control", "no-store"))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name, value).expect("valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_has_the_fields_the_auto_login_drives() {
        let page = login_form("st<1>", false);
        for part in [
            "<title>Lingma simulator login</title>",
            "<form id=\"login-form\" method=\"post\" action=\"/login\">",
            "<input id=\"username\" name=\"username\" type=\"text\">",
            "<input id=\"password\" name=\"password\" type=\"password\">",
            "name=\"state\" type=\"hidden\" value=\"st&lt;1&gt;\"",
            "<button id=\"login-submit\" type=\"submit\">Log in</button>",
        ] {
            assert!(page.contains(part), "form lacks {part}:\n{page}");
        }
        assert!(!page.contains("login-error"));
        assert!(login_form("s", true)
            .contains("<p id=\"login-error\" class=\"error\">Wrong user name or password.</p>"));
    }
}
