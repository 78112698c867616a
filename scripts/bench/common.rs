//! What the bench (`main.rs`) and the soak (`soak.rs`) share: scratch directories, the
//! release gateway started on its simulator, the gateway's RSS, and a keep-alive HTTP/1.1
//! client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh, empty directory under the system temp dir, named after `tag` and this process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lgw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process that gets SIGTERM and is reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

/// Starts `bin serve --simulator` with `instances` simulator instances on a free port, its
/// work directories under `dir` and `env` added to its environment, and waits until
/// `/healthz` says it is ready. Returns the process and its `host:port`.
///
/// Access lines are logged at info as in production, into `dir/gateway.log`: a pipe that
/// the caller drains from a thread competing with its client threads would stall the
/// gateway's logging whenever that thread is not scheduled.
pub fn start_gateway(
    bin: &Path,
    dir: &Path,
    instances: usize,
    env: &[(&str, String)],
) -> (Proc, String) {
    let log_path = dir.join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(bin)
        .args(["serve", "--simulator", "--port", "0", "--log-level", "info"])
        .arg("--instances")
        .arg(instances.to_string())
        .arg("--work-dir")
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(i) = text.find("listening on http://") {
            let rest = &text[i + 20..];
            break rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())].to_string();
        }
        assert!(Instant::now() < deadline, "gateway did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = TcpStream::connect(&addr).ok().and_then(|mut s| {
            let ask = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.write_all(ask.as_bytes()).ok()?;
            let mut t = String::new();
            s.read_to_string(&mut t).ok()?;
            Some(t.starts_with("HTTP/1.1 200"))
        });
        if ok == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "gateway not healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    (proc, addr)
}

/// The resident set of process `pid` in KiB (`VmRSS` in `/proc/PID/status`), or `None`
/// once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))?
        .parse()
        .ok()
}

/// A response head: the status and how its body is framed.
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
    /// `Connection: close`: the server ends the connection after this response.
    pub close: bool,
}

/// An HTTP/1.1 client on one keep-alive connection.
pub struct Http {
    pub addr: String,
    pub r: BufReader<TcpStream>,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Http {
    pub fn connect(addr: &str) -> io::Result<Http> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Http {
            addr: addr.to_string(),
            r: BufReader::new(s),
        })
    }

    /// Sends one request, with a JSON body unless `body` is empty.
    pub fn send(&mut self, method: &str, path: &str, body: &str) -> io::Result<()> {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.r.get_mut().write_all(req.as_bytes())
    }

    /// A line of the response, without its line ending; end of stream is an error.
    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.truncate(line.trim_end_matches(['\r', '\n']).len());
        Ok(line)
    }

    /// Reads a response's status line and headers.
    pub fn head(&mut self) -> io::Result<Head> {
        let status_line = self.line()?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut head = Head {
            status,
            content_length: None,
            chunked: false,
            close: false,
        };
        loop {
            let h = self.line()?;
            if h.is_empty() {
                return Ok(head);
            }
            let Some((name, value)) = h.split_once(':') else {
                return Err(bad(format!("bad header line {h:?}")));
            };
            let value = value.trim().to_ascii_lowercase();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = value.parse().map_err(|_| bad(format!("bad {h:?}")))?;
                    head.content_length = Some(n);
                }
                "transfer-encoding" => head.chunked = value.contains("chunked"),
                "connection" => head.close = value.contains("close"),
                _ => {}
            }
        }
    }

    /// Reads the whole body `head` announces: `Content-Length` bytes, or every chunk of a
    /// chunked body up to its last (zero) chunk and trailer. A body cut short is an error.
    pub fn body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if !head.chunked {
            let mut buf = vec![0; head.content_length.unwrap_or(0)];
            self.r.read_exact(&mut buf)?;
            return Ok(buf);
        }
        let mut out = Vec::new();
        loop {
            let size_line = self.line()?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| bad(format!("bad chunk size line {size_line:?}")))?;
            if size == 0 {
                while !self.line()?.is_empty() {} // trailer
                return Ok(out);
            }
            let start = out.len();
            out.resize(start + size, 0);
            self.r.read_exact(&mut out[start..])?;
            if !self.line()?.is_empty() {
                return Err(bad("chunk not followed by CRLF".into()));
            }
        }
    }
}
