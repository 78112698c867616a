//! Finding a running Lingma through its directory's discovery file: `.info.json`
//! (`{"websocketPort", "pid", "ipcServerPath"}`) first, else `.info` (the port, the pid and,
//! on newer builds, a third line: an IPC socket or pipe path). The parsers are pure; `read`
//! looks at one directory. Used by the supervisor thread, for a spawned Lingma and for one
//! the gateway attaches to.

use std::path::{Path, PathBuf};

pub(crate) const INFO: &str = ".info";
pub(crate) const INFO_JSON: &str = ".info.json";

/// What a discovery file says about a running runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Runtime {
    pub(crate) port: u16,
    /// Absent only in a `.info.json` that leaves it out.
    pub(crate) pid: Option<u32>,
    /// The IPC socket or pipe newer runtimes also listen on (not used, logged).
    pub(crate) ipc: Option<String>,
}

/// One discovery file's text, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Found(Runtime),
    /// Empty or cut short: the runtime may be writing it right now.
    NotYet,
    /// Complete but meaningless; says why.
    Garbage(String),
}

/// `.info`: `port\npid[\nipc path]`. A port without its pid line is a file being written.
pub(crate) fn parse_info(text: &str) -> Parsed {
    let mut lines = text.lines().map(str::trim);
    let Some(port) = lines.next().filter(|l| !l.is_empty()) else {
        return Parsed::NotYet;
    };
    let Some(port) = valid_port(port.parse::<u64>().ok()) else {
        return Parsed::Garbage(format!("first line {port:?} is not a port"));
    };
    let Some(pid) = lines.next().filter(|l| !l.is_empty()) else {
        return Parsed::NotYet;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return Parsed::Garbage(format!("second line {pid:?} is not a pid"));
    };
    let ipc = lines.next().filter(|l| !l.is_empty()).map(String::from);
    Parsed::Found(Runtime {
        port,
        pid: Some(pid),
        ipc,
    })
}

/// `.info.json`: `{"websocketPort", "pid", "ipcServerPath"}` (older spellings of the port
/// key accepted). JSON that ends early is a file being written.
pub(crate) fn parse_info_json(text: &str) -> Parsed {
    if text.trim().is_empty() {
        return Parsed::NotYet;
    }
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) if e.is_eof() => return Parsed::NotYet,
        Err(e) => return Parsed::Garbage(format!("not JSON: {e}")),
    };
    let port = ["websocketPort", "socketPort", "port"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_u64));
    let Some(port) = valid_port(port) else {
        return Parsed::Garbage("no websocketPort between 1 and 65535".into());
    };
    Parsed::Found(Runtime {
        port,
        pid: v
            .get("pid")
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
        ipc: v
            .get("ipcServerPath")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from),
    })
}

fn valid_port(n: Option<u64>) -> Option<u16> {
    n.and_then(|n| u16::try_from(n).ok()).filter(|p| *p > 0)
}

/// A runtime found in a directory, and the file that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Discovered {
    pub(crate) runtime: Runtime,
    pub(crate) file: PathBuf,
}

/// The runtime `dir`'s discovery file names: `.info.json` when it says something, else
/// `.info`. `Err` says why there is none (yet).
pub(crate) fn read(dir: &Path) -> Result<Discovered, String> {
    let mut why = Vec::new();
    for (name, parse) in [
        (INFO_JSON, parse_info_json as fn(&str) -> Parsed),
        (INFO, parse_info),
    ] {
        let file = dir.join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                why.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        match parse(&text) {
            Parsed::Found(runtime) => return Ok(Discovered { runtime, file }),
            Parsed::NotYet => why.push(format!("{} is incomplete", file.display())),
            Parsed::Garbage(e) => why.push(format!("{}: {e}", file.display())),
        }
    }
    if why.is_empty() {
        return Err(format!(
            "no {INFO_JSON} or {INFO} in {} (is the runtime running?)",
            dir.display()
        ));
    }
    Err(why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(port: u16, pid: Option<u32>, ipc: Option<&str>) -> Parsed {
        Parsed::Found(Runtime {
            port,
            pid,
            ipc: ipc.map(String::from),
        })
    }

    #[test]
    fn info_of_two_and_three_lines() {
        assert_eq!(parse_info("37010\n4242\n"), found(37010, Some(4242), None));
        assert_eq!(parse_info("37010\r\n4242"), found(37010, Some(4242), None));
        assert_eq!(
            parse_info("37011\n4242\n/tmp/lingma-ipc.sock\n"),
            found(37011, Some(4242), Some("/tmp/lingma-ipc.sock"))
        );
        assert_eq!(
            parse_info("37011\n4242\n\\\\.\\pipe\\lingma\n"),
            found(37011, Some(4242), Some("\\\\.\\pipe\\lingma"))
        );
    }

    #[test]
    fn an_info_being_written_is_not_yet() {
        for partial in ["", "\n", "37010", "37010\n", "37010\n\n"] {
            assert_eq!(parse_info(partial), Parsed::NotYet, "{partial:?}");
        }
    }

    #[test]
    fn a_garbage_info_says_why() {
        for bad in [
            "hello\n1\n",
            "0\n1\n",
            "70000\n1\n",
            "37010\npid\n",
            "-1\n2\n",
        ] {
            assert!(
                matches!(parse_info(bad), Parsed::Garbage(_)),
                "{bad:?}: {:?}",
                parse_info(bad)
            );
        }
    }

    #[test]
    fn info_json_with_and_without_its_optional_fields() {
        assert_eq!(
            parse_info_json(r#"{"websocketPort":37012,"pid":7,"ipcServerPath":"/run/l.sock"}"#),
            found(37012, Some(7), Some("/run/l.sock"))
        );
        assert_eq!(
            parse_info_json(r#"{"websocketPort":37012}"#),
            found(37012, None, None)
        );
        assert_eq!(
            parse_info_json(r#"{"port":37013,"pid":7,"ipcServerPath":""}"#),
            found(37013, Some(7), None)
        );
    }

    #[test]
    fn an_info_json_being_written_is_not_yet_and_garbage_says_why() {
        for partial in [
            "",
            "  ",
            "{",
            r#"{"websocketPort":370"#,
            r#"{"websocketPort":37012,"#,
        ] {
            assert_eq!(parse_info_json(partial), Parsed::NotYet, "{partial:?}");
        }
        for bad in [
            "37010\n1\n",
            "[]",
            r#"{"pid":1}"#,
            r#"{"websocketPort":0}"#,
            r#"{"websocketPort":"37010"}"#,
            r#"{"websocketPort":65536}"#,
            "{}}",
        ] {
            assert!(
                matches!(parse_info_json(bad), Parsed::Garbage(_)),
                "{bad:?}: {:?}",
                parse_info_json(bad)
            );
        }
    }

    /// The test of the reader this module replaced (`process::read_info`), kept as it was.
    #[test]
    fn reads_two_and_three_line_info_and_json() {
        let read_info = |dir: &Path| read(dir).ok().map(|d| d.runtime.port);
        let dir = std::env::temp_dir().join(format!("lgw-info-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_info(&dir), None);
        std::fs::write(dir.join(".info"), "37010\n").unwrap();
        assert_eq!(read_info(&dir), None, "half-written file");
        std::fs::write(dir.join(".info"), "37010\n4242\n").unwrap();
        assert_eq!(read_info(&dir), Some(37010));
        std::fs::write(dir.join(".info"), "37011\n4242\nextra\n").unwrap();
        assert_eq!(read_info(&dir), Some(37011));
        std::fs::remove_file(dir.join(".info")).unwrap();
        std::fs::write(dir.join(".info.json"), r#"{"websocketPort":37012,"pid":1}"#).unwrap();
        assert_eq!(read_info(&dir), Some(37012));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_prefers_info_json_and_falls_back_to_info() {
        let dir = std::env::temp_dir().join(format!("lgw-discovery-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = read(&dir).unwrap_err();
        assert!(err.contains("no .info.json or .info"), "{err}");
        std::fs::write(dir.join(INFO), "37010\n").unwrap();
        assert!(read(&dir).unwrap_err().contains("incomplete"));
        std::fs::write(dir.join(INFO), "37010\n4242\n").unwrap();
        let d = read(&dir).unwrap();
        assert_eq!((d.runtime.port, d.file.clone()), (37010, dir.join(INFO)));
        std::fs::write(dir.join(INFO_JSON), r#"{"websocketPort":37020,"pid":1}"#).unwrap();
        let d = read(&dir).unwrap();
        assert_eq!(
            (d.runtime.port, d.file.clone()),
            (37020, dir.join(INFO_JSON))
        );
        // A .info.json cut short does not hide a complete .info.
        std::fs::write(dir.join(INFO_JSON), r#"{"websocketPort":"#).unwrap();
        assert_eq!(read(&dir).unwrap().runtime.port, 37010);
        std::fs::remove_file(dir.join(INFO)).unwrap();
        assert!(read(&dir).unwrap_err().contains("incomplete"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
