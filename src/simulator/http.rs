//! The simulator's HTTP port (the real server's login-callback port), served by thread
//! `sim-http`: `GET /` answers a small text page, anything else 404.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tiny_http::{Header, Request, Response, Server};

const HOME_PAGE: &str = "Lingma simulator\n";

pub(super) struct HttpServer {
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `127.0.0.1:port` (0: ephemeral) and returns the server with its real port.
pub(super) fn bind(port: u16) -> io::Result<(Server, u16)> {
    let server = Server::http(("127.0.0.1", port)).map_err(io::Error::other)?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("HTTP server has no IP address"))?;
    Ok((server, port))
}

impl HttpServer {
    pub fn spawn(server: Server) -> io::Result<HttpServer> {
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, flag) = (Arc::clone(&server), Arc::clone(&stop));
        let thread = thread::Builder::new()
            .name("sim-http".into())
            .spawn(move || http_loop(&srv, &flag))?;
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

fn http_loop(server: &Server, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv() {
            Ok(request) => respond(request),
            Err(e) if !stop.load(Ordering::SeqCst) => log::debug!("simulator: HTTP accept: {e}"),
            Err(_) => break,
        }
    }
}

fn respond(request: Request) {
    let path = request.url().split('?').next().unwrap_or("");
    let found = request.method() == &tiny_http::Method::Get && path == "/";
    let (status, body) = if found {
        (200, HOME_PAGE)
    } else {
        (404, "not found\n")
    };
    let content_type =
        Header::from_bytes("Content-Type", "text/plain; charset=utf-8").expect("valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(content_type);
    if let Err(e) = request.respond(response) {
        log::debug!("simulator: HTTP response not sent: {e}");
    }
}
