//! Configuration: `gateway.ini` parsed into typed values, then environment overrides
//! (`LINGMA_GATEWAY_<KEY>`), then command-line flags. The only module that reads the
//! environment. Every error names where the bad value came from and the key.
//!
//! `keys` is the table of known keys, `raw` gathers their text with its origin, `build`
//! types it into `Config` (`typed`).

mod build;
mod error;
mod keys;
mod raw;
#[cfg(test)]
mod tests;
mod typed;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub(crate) use keys::{ACCOUNT_KEYS, ENV_PREFIX, KEYS};
pub use raw::RawConfig;
pub use typed::Config;
pub(crate) use typed::{Account, AskMode, DialectChoice, LoginConfig, WsHeader};

/// Loads defaults, then the file (if any), then the environment.
pub(crate) fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let mut raw = RawConfig::defaults();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        raw.apply_ini(&text, path)?;
    }
    raw.apply_env(env)?;
    Ok(raw)
}

/// The config file to read: `--config`, else `LINGMA_GATEWAY_CONFIG`, else `./gateway.ini` if
/// it exists.
pub(crate) fn config_path(flag: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(PathBuf::from(p));
    }
    if let Ok(p) = std::env::var(format!("{ENV_PREFIX}CONFIG")) {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let default = PathBuf::from("gateway.ini");
    default.exists().then_some(default)
}

/// The process environment (kept here so no other module reads it).
pub(crate) fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}
