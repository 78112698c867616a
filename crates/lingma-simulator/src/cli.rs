//! The simulator's command line: the real `Lingma` binary's (`start`, `version`, `status`)
//! plus simulator-only options before the subcommand. Pure parsing; `process` applies the
//! environment fallbacks and runs the command.

use std::path::PathBuf;

use crate::dialect::Dialect;
use crate::upgrade::InfoFile;

pub(crate) const USAGE: &str = "\
Lingma SIMULATOR (a fake of the Tongyi Lingma local server, for tests)

usage: lingma-gateway simulate [SIMOPTS] start [--workDir DIR] [--socketPort N] [--httpPort N]
                                     [--transportType=websocket] [--endpoint URL]
       lingma-gateway simulate version
       lingma-gateway simulate status -o json [--workDir DIR]

SIMOPTS (each also read from the environment):
  --first-token-ms N   delay before the first chat/answer   (LINGMA_SIM_FIRST_TOKEN_MS)
  --chunk-ms N         delay between chat/answer deltas      (LINGMA_SIM_CHUNK_MS)
  --logged-out         start logged out                      (LINGMA_SIM_LOGGED_OUT=1)
                       (LINGMA_SIM_KEEP_LOGIN=1: neither log out nor create the test
                        account; the workDir's own login, if any, is used as it is)
  --login-user NAME    user name the login page accepts      (LINGMA_SIM_LOGIN_USER,
                       default lingma-test)
  --login-password PW  password the login page accepts       (LINGMA_SIM_LOGIN_PASSWORD,
                       default lingma-pass; one starting with - needs --login-password=PW)
  --info-file KIND     discovery file(s) written once listening (LINGMA_SIM_INFO_FILE):
                       info (.info: port, pid; the default), info3 (.info with a third
                       line, an IPC path, not served), json (.info.json {websocketPort,
                       pid, ipcServerPath}), both (.info and .info.json)
  --ws-path PATH       take WebSocket upgrades on PATH only, 404 otherwise, as the Qoder
                       CN sidecar does with /ws           (LINGMA_SIM_WS_PATH)
  --ws-token-header H  take only upgrades whose header H holds the machine token of
                       <workDir>/cache/machine_token.json (its JSON token; made when
                       absent), 401 otherwise, as the Qoder CN sidecar does with
                       Cosy-MachineToken                  (LINGMA_SIM_WS_TOKEN_HEADER)
  --dialect D          cosy, acp or both (default): chat/ask, session/*, or either;
                       the other dialect's methods are unknown (LINGMA_SIM_DIALECT)

Logging in: login/generateUrl returns http://127.0.0.1:<httpPort>/login?state=..., a form
(#username, #password, #login-submit) whose submit ends at /auth/callback and stores the
login in <workDir>/cache/user; auth/logout removes it.

Ports default to 0 (ephemeral); the WebSocket port is written to <workDir>/.info
(or .info.json, see --info-file).
";

pub(crate) const DEFAULT_WORK_DIR: &str = "./lingma-sim-work";

#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct SimOptions {
    pub(crate) first_token_ms: Option<u64>,
    pub(crate) chunk_ms: Option<u64>,
    pub(crate) logged_out: bool,
    pub(crate) login_user: Option<String>,
    pub(crate) login_password: Option<String>,
    pub(crate) info_file: Option<InfoFile>,
    pub(crate) ws_path: Option<String>,
    pub(crate) ws_token_header: Option<String>,
    pub(crate) dialect: Option<Dialect>,
}

impl std::fmt::Debug for SimOptions {
    /// Never shows the login password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("first_token_ms", &self.first_token_ms)
            .field("chunk_ms", &self.chunk_ms)
            .field("logged_out", &self.logged_out)
            .field("login_user", &self.login_user)
            .field(
                "login_password",
                &self.login_password.as_ref().map(|_| "<redacted>"),
            )
            .field("info_file", &self.info_file)
            .field("ws_path", &self.ws_path)
            .field("ws_token_header", &self.ws_token_header)
            .field("dialect", &self.dialect)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartOptions {
    pub(crate) work_dir: PathBuf,
    pub(crate) socket_port: u16,
    pub(crate) http_port: u16,
    pub(crate) endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    Version,
    Status { work_dir: PathBuf, json: bool },
    Start(StartOptions),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cli {
    pub(crate) sim: SimOptions,
    pub(crate) command: Command,
    /// Flags of the real binary that the simulator accepts and ignores, for the log.
    pub(crate) ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `--name value` / `--name=value` / `-o value` argument.
struct Flag<'a> {
    name: &'a str,
    inline: Option<&'a str>,
}

/// Walks the arguments, handing out flags and their values.
struct Args<'a> {
    args: &'a [String],
    pos: usize,
}

impl<'a> Args<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.args.get(self.pos).map(String::as_str)
    }

    /// The next argument as a flag, or `None` at a non-flag (or the end).
    fn next_flag(&mut self) -> Option<Flag<'a>> {
        let arg = self.peek()?;
        let body = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())?;
        self.pos += 1;
        Some(match body.split_once('=') {
            Some((name, value)) => Flag {
                name,
                inline: Some(value),
            },
            None => Flag {
                name: body,
                inline: None,
            },
        })
    }

    /// The flag's value: inline, else the next argument unless that is another flag.
    fn value(&mut self, flag: &Flag<'a>) -> Result<&'a str, CliError> {
        if let Some(v) = flag.inline {
            return Ok(v);
        }
        match self.peek() {
            Some(v) if !v.starts_with('-') => {
                self.pos += 1;
                Ok(v)
            }
            _ => Err(CliError(format!("missing value for --{}", flag.name))),
        }
    }

    /// Skips an unknown flag, with the value that follows it when there is one (no
    /// subcommand takes positional arguments, so a bare word after it must be its value).
    /// Values of flags that look like secrets are not repeated (the list goes to the log).
    fn skip(&mut self, flag: &Flag<'a>) -> String {
        let name = flag.name;
        let lower = name.to_ascii_lowercase();
        let secret = ["pass", "secret", "token", "key"]
            .iter()
            .any(|s| lower.contains(s));
        let shown = |v: &'a str| if secret { "<redacted>" } else { v };
        if flag.inline.is_none() {
            if let Some(v) = self.peek().filter(|v| !v.starts_with('-')) {
                self.pos += 1;
                return format!("--{name} {}", shown(v));
            }
        }
        match flag.inline {
            Some(v) => format!("--{name}={}", shown(v)),
            None => format!("--{name}"),
        }
    }
}

pub(crate) fn parse(args: &[String]) -> Result<Cli, CliError> {
    let mut a = Args { args, pos: 0 };
    let mut sim = SimOptions::default();
    let mut ignored = Vec::new();
    while let Some(flag) = a.next_flag() {
        if matches!(flag.name, "help" | "h") {
            return Ok(Cli {
                sim,
                command: Command::Help,
                ignored,
            });
        }
        if !sim_option(&mut a, &flag, &mut sim)? {
            return Err(CliError(format!(
                "unknown simulator option --{}",
                flag.name
            )));
        }
    }
    let sub = a
        .peek()
        .ok_or_else(|| CliError("missing subcommand (start, version, status)".into()))?;
    if !matches!(sub, "start" | "status" | "version" | "help") {
        return Err(CliError(format!("unknown subcommand {sub:?}")));
    }
    a.pos += 1;
    let mut work_dir = PathBuf::from(DEFAULT_WORK_DIR);
    let mut start = StartOptions {
        work_dir: PathBuf::new(),
        socket_port: 0,
        http_port: 0,
        endpoint: String::new(),
    };
    let mut json = false;
    while let Some(arg) = a.peek() {
        let Some(flag) = a.next_flag() else {
            return Err(CliError(format!("unexpected argument {arg:?}")));
        };
        match (sub, flag.name) {
            (_, "help" | "h") => {
                return Ok(Cli {
                    sim,
                    command: Command::Help,
                    ignored,
                })
            }
            ("start" | "status", "workDir") => work_dir = PathBuf::from(a.value(&flag)?),
            ("start", "socketPort") => start.socket_port = port(&flag, a.value(&flag)?)?,
            ("start", "httpPort") => start.http_port = port(&flag, a.value(&flag)?)?,
            ("start", "endpoint") => start.endpoint = a.value(&flag)?.to_string(),
            ("start", "transportType") => match a.value(&flag)? {
                "websocket" => {}
                other => {
                    return Err(CliError(format!(
                        "unsupported --transportType {other:?} (only websocket)"
                    )))
                }
            },
            ("status", "o" | "output") => json = a.value(&flag)? == "json",
            _ => {
                if !sim_option(&mut a, &flag, &mut sim)? {
                    ignored.push(a.skip(&flag));
                }
            }
        }
    }
    let command = match sub {
        "start" => Command::Start(StartOptions { work_dir, ..start }),
        "status" => Command::Status { work_dir, json },
        "version" => Command::Version,
        _ => Command::Help,
    };
    Ok(Cli {
        sim,
        command,
        ignored,
    })
}

/// Applies a simulator-only option; `Ok(false)` when `flag` is not one.
fn sim_option<'a>(
    a: &mut Args<'a>,
    flag: &Flag<'a>,
    sim: &mut SimOptions,
) -> Result<bool, CliError> {
    match flag.name {
        "first-token-ms" => sim.first_token_ms = Some(millis(flag, a.value(flag)?)?),
        "chunk-ms" => sim.chunk_ms = Some(millis(flag, a.value(flag)?)?),
        "logged-out" => {
            sim.logged_out = match flag.inline {
                None | Some("1" | "true") => true,
                Some("0" | "false") => false,
                Some(v) => {
                    return Err(CliError(format!("--logged-out takes no value (got {v:?})")))
                }
            }
        }
        "login-user" => sim.login_user = Some(non_empty(flag, a.value(flag)?)?),
        "login-password" => sim.login_password = Some(non_empty(flag, a.value(flag)?)?),
        "info-file" => sim.info_file = Some(info_file(a.value(flag)?)?),
        "ws-path" => sim.ws_path = Some(ws_path(a.value(flag)?)?),
        "ws-token-header" => sim.ws_token_header = Some(non_empty(flag, a.value(flag)?)?),
        "dialect" => sim.dialect = Some(dialect(a.value(flag)?)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// `--info-file`'s kind (also used for `LINGMA_SIM_INFO_FILE`).
pub(crate) fn info_file(value: &str) -> Result<InfoFile, CliError> {
    InfoFile::parse(value).ok_or_else(|| {
        CliError(format!(
            "--info-file wants info, info3, json or both, got {value:?}"
        ))
    })
}

/// `--ws-path`'s path (also used for `LINGMA_SIM_WS_PATH`).
pub(crate) fn ws_path(value: &str) -> Result<String, CliError> {
    if !value.starts_with('/') {
        return Err(CliError(format!(
            "--ws-path wants a path starting with /, got {value:?}"
        )));
    }
    Ok(value.to_string())
}

pub(crate) fn dialect(value: &str) -> Result<Dialect, CliError> {
    Dialect::parse(value)
        .ok_or_else(|| CliError(format!("--dialect wants cosy, acp or both, got {value:?}")))
}

fn non_empty(flag: &Flag, value: &str) -> Result<String, CliError> {
    if value.is_empty() {
        return Err(CliError(format!("--{} must not be empty", flag.name)));
    }
    Ok(value.to_string())
}

fn millis(flag: &Flag, value: &str) -> Result<u64, CliError> {
    value
        .parse()
        .map_err(|_| CliError(format!("--{} wants milliseconds, got {value:?}", flag.name)))
}

fn port(flag: &Flag, value: &str) -> Result<u16, CliError> {
    value.parse().map_err(|_| {
        CliError(format!(
            "--{} wants a port number, got {value:?}",
            flag.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_str(line: &str) -> Result<Cli, CliError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn start(line: &str) -> StartOptions {
        match parse_str(line).unwrap().command {
            Command::Start(s) => s,
            other => panic!("not start: {other:?}"),
        }
    }

    #[test]
    fn start_flags_in_both_spellings() {
        let s = start("start --workDir /tmp/w --socketPort=5000 --httpPort 5001 --transportType=websocket --endpoint=http://x");
        assert_eq!(s.work_dir, PathBuf::from("/tmp/w"));
        assert_eq!((s.socket_port, s.http_port), (5000, 5001));
        assert_eq!(s.endpoint, "http://x");
    }

    #[test]
    fn start_defaults() {
        let s = start("start");
        assert_eq!(s.work_dir, PathBuf::from(DEFAULT_WORK_DIR));
        assert_eq!((s.socket_port, s.http_port), (0, 0));
        assert_eq!(s.endpoint, "");
    }

    #[test]
    fn simulator_options_go_before_the_subcommand() {
        let cli = parse_str("--first-token-ms 20 --chunk-ms=3 --logged-out start").unwrap();
        assert_eq!(
            cli.sim,
            SimOptions {
                first_token_ms: Some(20),
                chunk_ms: Some(3),
                logged_out: true,
                login_user: None,
                login_password: None,
                ..SimOptions::default()
            }
        );
        assert!(parse_str("--bogus start").is_err());
    }

    #[test]
    fn dialect_in_both_places_and_spellings() {
        assert_eq!(
            parse_str("--dialect acp start").unwrap().sim.dialect,
            Some(Dialect::Acp)
        );
        let cli = parse_str("start --workDir w --dialect=cosy").unwrap();
        assert_eq!(cli.sim.dialect, Some(Dialect::Cosy));
        assert!(cli.ignored.is_empty());
        assert_eq!(parse_str("start").unwrap().sim.dialect, None);
        assert!(parse_str("--dialect lsp start").is_err());
        assert!(parse_str("start --dialect").is_err());
    }

    #[test]
    fn login_credentials_in_both_spellings_and_places() {
        let cli = parse_str("--login-user alice --login-password=s3cret start").unwrap();
        assert_eq!(cli.sim.login_user.as_deref(), Some("alice"));
        assert_eq!(cli.sim.login_password.as_deref(), Some("s3cret"));
        let cli = parse_str("start --workDir w --login-user=bob --login-password=-dash").unwrap();
        assert_eq!(cli.sim.login_user.as_deref(), Some("bob"));
        assert_eq!(cli.sim.login_password.as_deref(), Some("-dash"));
        assert!(cli.ignored.is_empty());
        assert_eq!(parse_str("start").unwrap().sim, SimOptions::default());
        assert!(parse_str("--login-user start").is_err());
        assert!(parse_str("--login-user= start").is_err());
        assert!(parse_str("start --login-password").is_err());
        assert!(parse_str("start --login-password=").is_err());
        // A password never shows in Debug output.
        let shown = format!("{:?}", parse_str("--login-password pw123 start").unwrap());
        assert!(!shown.contains("pw123"), "{shown}");
    }

    #[test]
    fn usage_lists_every_option_and_variable() {
        for word in [
            "--first-token-ms",
            "--chunk-ms",
            "--logged-out",
            "--login-user",
            "--login-password",
            "--dialect",
            "LINGMA_SIM_DIALECT",
            "LINGMA_SIM_LOGGED_OUT",
            "LINGMA_SIM_LOGIN_USER",
            "LINGMA_SIM_LOGIN_PASSWORD",
            "lingma-test",
            "lingma-pass",
        ] {
            assert!(USAGE.contains(word), "usage lacks {word}");
        }
    }

    #[test]
    fn discovery_file_and_upgrade_options() {
        let cli =
            parse_str("--info-file json --ws-path=/ws --ws-token-header Cosy-MachineToken start")
                .unwrap();
        assert_eq!(cli.sim.info_file, Some(InfoFile::Json));
        assert_eq!(cli.sim.ws_path.as_deref(), Some("/ws"));
        assert_eq!(
            cli.sim.ws_token_header.as_deref(),
            Some("Cosy-MachineToken")
        );
        assert_eq!(
            parse_str("start --info-file=info3").unwrap().sim.info_file,
            Some(InfoFile::Info3)
        );
        assert_eq!(parse_str("start").unwrap().sim.info_file, None);
        assert!(parse_str("--info-file xml start").is_err());
        assert!(parse_str("--ws-path ws start").is_err());
        assert!(parse_str("--ws-token-header= start").is_err());
        for word in [
            "--info-file",
            "info3",
            "--ws-path",
            "--ws-token-header",
            "LINGMA_SIM_INFO_FILE",
            "LINGMA_SIM_WS_PATH",
            "LINGMA_SIM_WS_TOKEN_HEADER",
            "machine_token.json",
        ] {
            assert!(USAGE.contains(word), "usage lacks {word}");
        }
    }

    #[test]
    fn unknown_real_flags_are_ignored_with_their_values() {
        let cli = parse_str("start --logLevel debug --foo=bar --verbose --workDir w").unwrap();
        assert_eq!(
            cli.ignored,
            vec!["--logLevel debug", "--foo=bar", "--verbose"]
        );
        assert!(matches!(cli.command, Command::Start(ref s) if s.work_dir == Path::new("w")));
        // Unknown flags that look like secrets are logged without their values.
        let cli = parse_str("start --apiKey=k1 --userPassword p1 --accessToken t1").unwrap();
        assert_eq!(
            cli.ignored,
            vec![
                "--apiKey=<redacted>",
                "--userPassword <redacted>",
                "--accessToken <redacted>"
            ]
        );
    }

    #[test]
    fn missing_or_bad_values_are_errors() {
        assert!(parse_str("start --workDir").is_err());
        assert!(parse_str("start --workDir --socketPort 1").is_err());
        assert!(parse_str("start --socketPort abc").is_err());
        assert!(parse_str("start --transportType=stdio").is_err());
        assert!(parse_str("--chunk-ms start").is_err());
        assert!(parse_str("start stray").is_err());
        assert!(parse_str("").is_err());
        assert!(parse_str("launch").is_err());
    }

    #[test]
    fn version_status_and_help() {
        assert_eq!(parse_str("version").unwrap().command, Command::Version);
        assert_eq!(
            parse_str("status -o json --workDir d").unwrap().command,
            Command::Status {
                work_dir: PathBuf::from("d"),
                json: true
            }
        );
        assert_eq!(
            parse_str("status").unwrap().command,
            Command::Status {
                work_dir: PathBuf::from(DEFAULT_WORK_DIR),
                json: false
            }
        );
        assert_eq!(parse_str("--help").unwrap().command, Command::Help);
        assert_eq!(parse_str("start -h").unwrap().command, Command::Help);
    }
}
