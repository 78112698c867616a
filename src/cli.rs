//! Command-line parsing and `--help`. Flags override `gateway.ini` and the environment.

use crate::config::{ConfigError, RawConfig, ACCOUNT_KEYS, ENV_PREFIX, KEYS};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Serve(ServeArgs),
    CheckConfig(ServeArgs),
    /// Ask the running gateway for an instance's login URL (`--instance`).
    LoginUrl(ServeArgs, String),
    Simulate(Vec<String>),
    Help,
    Version,
}

/// What `simulate` (and `serve` with `simulator = true`) says in a build without the
/// simulator (`cargo build --no-default-features`).
pub const NO_SIMULATOR: &str =
    "this build has no simulator: rebuild with the default feature `simulator`";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServeArgs {
    pub config: Option<String>,
    /// `(config key, value, flag as written)`.
    pub overrides: Vec<(String, String, String)>,
}

impl ServeArgs {
    pub fn apply(&self, raw: &mut RawConfig) -> Result<(), ConfigError> {
        for (key, value, flag) in &self.overrides {
            raw.set_flag(key, value, flag)?;
        }
        Ok(())
    }
}

/// Flags that set a config key: `(flag, key, takes a value)`.
const FLAG_KEYS: &[(&str, &str, bool)] = &[
    ("--host", "host", true),
    ("--port", "port", true),
    ("--log-level", "log_level", true),
    ("--instances", "instance_count", true),
    ("--lingma-bin", "lingma_bin", true),
    ("--work-dir", "lingma_work_dir", true),
    ("--simulator", "simulator", false),
];

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut rest = args;
    let mut check = false;
    let mut login_url = false;
    let mut instance = "lingma-0".to_string();
    match args.first().map(String::as_str) {
        Some("simulate") => return Ok(Command::Simulate(args[1..].to_vec())),
        Some("serve") => rest = &args[1..],
        Some("check-config") => {
            check = true;
            rest = &args[1..];
        }
        Some("login-url") => {
            login_url = true;
            rest = &args[1..];
        }
        _ => {}
    }
    let mut out = ServeArgs::default();
    let mut i = 0;
    while i < rest.len() {
        let arg = rest[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" | "-c" => {
                out.config = Some(value(flag, inline, rest, &mut i)?);
            }
            "--instance" if login_url => instance = value(flag, inline, rest, &mut i)?,
            _ => {
                let Some((_, key, takes)) = FLAG_KEYS.iter().find(|(f, _, _)| *f == flag) else {
                    return Err(format!("unknown argument `{arg}` (see --help)"));
                };
                let v = if *takes {
                    value(flag, inline, rest, &mut i)?
                } else {
                    inline.unwrap_or_else(|| "true".into())
                };
                out.overrides.push((key.to_string(), v, flag.to_string()));
            }
        }
        i += 1;
    }
    Ok(if login_url {
        Command::LoginUrl(out, instance)
    } else if check {
        Command::CheckConfig(out)
    } else {
        Command::Serve(out)
    })
}

fn value(
    flag: &str,
    inline: Option<String>,
    args: &[String],
    i: &mut usize,
) -> Result<String, String> {
    if let Some(v) = inline {
        return Ok(v);
    }
    *i += 1;
    args.get(*i)
        .cloned()
        .ok_or_else(|| format!("`{flag}` needs a value"))
}

pub fn help() -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "lingma-gateway {} — OpenAI- and Anthropic-compatible HTTP APIs in front of a local Tongyi Lingma\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(
        "USAGE:
    lingma-gateway [serve] [OPTIONS]        run the gateway
    lingma-gateway check-config [OPTIONS]   validate the configuration, print it (secrets redacted), exit
    lingma-gateway login-url [--instance lingma-0] [OPTIONS]
                                            ask the running gateway (same config) for an instance's
                                            login URL, for a person to open in a browser
    lingma-gateway simulate --help          the bundled Lingma simulator (for tests and demos)

OPTIONS:
    -c, --config PATH     configuration file (default: $LINGMA_GATEWAY_CONFIG, else ./gateway.ini if present)
        --simulator       spawn the bundled Lingma simulator instead of a real Lingma (logged loudly)
        --lingma-bin PATH the real Lingma binary            (key lingma_bin)
        --host ADDR       address to listen on              (key host)
        --port N          port to listen on, 0 = any free   (key port)
        --instances N     Lingma instances in the pool      (key instance_count)
        --work-dir DIR    parent of the instances' workDirs (key lingma_work_dir)
        --log-level L     error|warn|info|debug|trace       (key log_level)
    -h, --help            this text
    -V, --version         the version

Precedence: built-in defaults < config file < environment < flags.

CONFIGURATION KEYS (environment variable: ",
    );
    s.push_str(ENV_PREFIX);
    s.push_str("<KEY in upper case>):\n");
    let mut section = "";
    for k in KEYS {
        if k.section != section {
            section = k.section;
            s.push_str(&format!("  [{section}]\n"));
        }
        s.push_str(&format!(
            "    {:<26} {} (default: {:?})\n",
            k.key, k.help, k.default
        ));
    }
    s.push_str(&format!(
        "  [account.NAME]   (one section per account; environment: {ENV_PREFIX}ACCOUNT_<NAME>_<KEY>)\n"
    ));
    for k in ACCOUNT_KEYS {
        s.push_str(&format!(
            "    {:<26} {} (default: {:?})\n",
            k.key, k.help, k.default
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_both_forms() {
        let Command::Serve(a) = parse(&args(
            "--config x.ini --port=0 --simulator --log-level debug",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(a.config.as_deref(), Some("x.ini"));
        assert_eq!(a.overrides[0], ("port".into(), "0".into(), "--port".into()));
        assert_eq!(a.overrides[1].1, "true");
        assert_eq!(a.overrides[2].1, "debug");
    }

    #[test]
    fn subcommands_and_errors() {
        assert_eq!(
            parse(&args("simulate start --workDir d")).unwrap(),
            Command::Simulate(args("start --workDir d"))
        );
        assert!(matches!(
            parse(&args("check-config")).unwrap(),
            Command::CheckConfig(_)
        ));
        assert_eq!(parse(&args("--help")).unwrap(), Command::Help);
        assert!(parse(&args("--bogus")).unwrap_err().contains("--bogus"));
        assert!(parse(&args("--port"))
            .unwrap_err()
            .contains("needs a value"));
    }

    #[test]
    fn help_lists_every_key() {
        let h = help();
        for k in KEYS {
            assert!(h.contains(k.key), "{}", k.key);
        }
    }
}
