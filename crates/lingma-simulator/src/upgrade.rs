//! What a WebSocket upgrade must carry to be taken, and the discovery files the simulator
//! writes: the plain Lingma binary takes any path and no header; the Qoder CN sidecar wants
//! the path `/ws` and its `Cosy-MachineToken` (the token in `<workDir>/cache/
//! machine_token.json`), and refuses anything else, as the simulator then does. Pure apart
//! from the token file; checked on each connection's thread (`sim-conn-N`).

use std::io;
use std::path::{Path, PathBuf};

use tungstenite::handshake::server::{ErrorResponse, Request};
use tungstenite::http::StatusCode;

/// Starts the error of a refused upgrade, so the acceptor logs refusals (and not the
/// gateway's port probes, which connect and hang up).
pub(crate) const REFUSED: &str = "refused the WebSocket upgrade: ";

/// What an upgrade request must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Upgrade {
    /// The exact path (any, when `None`).
    pub(crate) path: Option<String>,
    /// A header's name and the value it must have.
    pub(crate) header: Option<(String, String)>,
}

impl Upgrade {
    /// `Err` with the status to answer and why (for the log and the response body) when
    /// `req` misses something.
    pub(crate) fn check(&self, req: &Request) -> Result<(), (StatusCode, String)> {
        if let Some(path) = &self.path {
            if req.uri().path() != path {
                let why = format!("path {} is not {path}", req.uri().path());
                return Err((StatusCode::NOT_FOUND, why));
            }
        }
        if let Some((name, value)) = &self.header {
            let sent = req.headers().get(name.as_str());
            // The token is never repeated, whichever way it is wrong.
            let why = match sent {
                None => format!("no {name} header"),
                Some(v) if v.as_bytes() != value.as_bytes() => format!("wrong {name} header"),
                Some(_) => return Ok(()),
            };
            return Err((StatusCode::UNAUTHORIZED, why));
        }
        Ok(())
    }
}

/// The response refusing an upgrade.
pub(crate) fn refusal(status: StatusCode, why: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(why.to_string()));
    *resp.status_mut() = status;
    resp
}

/// `<workDir>/cache/machine_token.json`, where the Qoder CN runtime keeps its machine token.
pub(crate) fn token_file(work_dir: &Path) -> PathBuf {
    work_dir.join("cache").join("machine_token.json")
}

/// The machine token of `work_dir`: the file's, or a new one written there (the runtime owns
/// its token; clients read the file).
pub(crate) fn machine_token(work_dir: &Path) -> io::Result<String> {
    let file = token_file(work_dir);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(token) = v["token"].as_str().filter(|t| !t.is_empty()) {
            return Ok(token.to_string());
        }
    }
    let token = format!("sim-machine-{}", uuid::Uuid::new_v4().simple());
    std::fs::create_dir_all(file.parent().unwrap_or(work_dir))?;
    let body = serde_json::json!({"token": token, "type": "lingma-simulator"});
    std::fs::write(&file, body.to_string())?;
    Ok(token)
}

/// Which discovery files `start` writes (`--info-file`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum InfoFile {
    /// `.info`: port, pid (the JetBrains runtime of 2.11.1).
    #[default]
    Info,
    /// `.info` with a third line, an IPC path.
    Info3,
    /// `.info.json` only.
    Json,
    /// `.info` (two lines) and `.info.json`.
    Both,
}

impl InfoFile {
    pub(crate) fn parse(s: &str) -> Option<InfoFile> {
        Some(match s {
            "info" => InfoFile::Info,
            "info3" => InfoFile::Info3,
            "json" => InfoFile::Json,
            "both" => InfoFile::Both,
            _ => return None,
        })
    }

    /// Each file's name and contents. The IPC path is named, not served.
    pub(crate) fn files(self, port: u16, pid: u32, ipc: &Path) -> Vec<(&'static str, String)> {
        let two = format!("{port}\n{pid}\n");
        let json = serde_json::json!({
            "websocketPort": port, "pid": pid, "ipcServerPath": ipc.display().to_string(),
        });
        match self {
            InfoFile::Info => vec![(".info", two)],
            InfoFile::Info3 => vec![(".info", format!("{two}{}\n", ipc.display()))],
            InfoFile::Json => vec![(".info.json", json.to_string())],
            InfoFile::Both => vec![(".info", two), (".info.json", json.to_string())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, header: Option<(&str, &str)>) -> Request {
        let mut b = Request::builder().uri(format!("ws://127.0.0.1:1{path}"));
        if let Some((n, v)) = header {
            b = b.header(n, v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn a_plain_upgrade_takes_anything() {
        assert!(Upgrade::default().check(&req("/any/path", None)).is_ok());
    }

    #[test]
    fn a_strict_upgrade_wants_its_path_and_token() {
        let u = Upgrade {
            path: Some("/ws".into()),
            header: Some(("Cosy-MachineToken".into(), "tok-1".into())),
        };
        assert!(u
            .check(&req("/ws", Some(("cosy-machinetoken", "tok-1"))))
            .is_ok());
        let status = |r: Request| u.check(&r).unwrap_err().0.as_u16();
        assert_eq!(status(req("/", Some(("Cosy-MachineToken", "tok-1")))), 404);
        assert_eq!(status(req("/ws", None)), 401);
        assert_eq!(
            status(req("/ws", Some(("Cosy-MachineToken", "tok-2")))),
            401
        );
        let (_, why) = u
            .check(&req("/ws", Some(("Cosy-MachineToken", "tok-2"))))
            .unwrap_err();
        assert!(!why.contains("tok-"), "{why}");
    }

    #[test]
    fn the_discovery_files_of_each_kind() {
        let ipc = Path::new("/w/.ipc.sock");
        assert_eq!(
            InfoFile::Info.files(5, 7, ipc),
            vec![(".info", "5\n7\n".into())]
        );
        assert_eq!(
            InfoFile::Info3.files(5, 7, ipc),
            vec![(".info", "5\n7\n/w/.ipc.sock\n".into())]
        );
        let json = InfoFile::Json.files(5, 7, ipc);
        let v: serde_json::Value = serde_json::from_str(&json[0].1).unwrap();
        assert_eq!(json[0].0, ".info.json");
        assert_eq!(
            (v["websocketPort"].as_u64(), v["pid"].as_u64()),
            (Some(5), Some(7))
        );
        assert_eq!(InfoFile::Both.files(5, 7, ipc).len(), 2);
        assert_eq!(InfoFile::parse("info3"), Some(InfoFile::Info3));
        assert_eq!(InfoFile::parse("xml"), None);
    }

    #[test]
    fn the_machine_token_is_kept_in_the_work_dir() {
        let dir = std::env::temp_dir().join(format!("sim-token-{}", uuid::Uuid::new_v4()));
        let first = machine_token(&dir).unwrap();
        assert_eq!(machine_token(&dir).unwrap(), first);
        let text = std::fs::read_to_string(token_file(&dir)).unwrap();
        assert!(text.contains(&first));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
