//! `RawConfig`: every key's text and where it came from (default, INI file, environment,
//! flag), before typing. Parsing the INI text and the environment happens here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin};
use super::keys::{
    account_spec, spec, valid_account_name, KeySpec, ACCOUNT_KEYS, ENV_PREFIX, KEYS,
};

/// Raw `key -> (value, origin)` before typing.
#[derive(Debug, Default, Clone)]
pub struct RawConfig {
    pub(super) values: BTreeMap<&'static str, (String, Origin)>,
    /// `[account.NAME]` sections: name → key → value.
    pub(super) accounts: BTreeMap<String, BTreeMap<&'static str, (String, Origin)>>,
    pub(super) source: Option<PathBuf>,
}

impl RawConfig {
    pub(crate) fn defaults() -> Self {
        let mut raw = RawConfig::default();
        for k in KEYS {
            raw.values
                .insert(k.key, (k.default.to_string(), Origin::Default));
        }
        raw
    }

    /// Parses INI text: `[section]` headers, `key = value`, `;`/`#` comments, blank lines.
    pub(crate) fn apply_ini(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let mut section: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: i + 1,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(ConfigError(format!(
                        "{origin}: malformed section header {line:?}"
                    )));
                };
                let name = name.trim();
                if let Some(account) = name.strip_prefix("account.") {
                    if !valid_account_name(account) {
                        return Err(ConfigError(format!(
                            "{origin}: account names use lowercase letters, digits and _ (got [{name}])"
                        )));
                    }
                    self.accounts.entry(account.to_string()).or_default();
                    section = Some(name.to_string());
                    continue;
                }
                if !KEYS.iter().any(|k| k.section == name) {
                    return Err(ConfigError(format!("{origin}: unknown section [{name}]")));
                }
                section = Some(name.to_string());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError(format!(
                    "{origin}: expected `key = value`, found {line:?}"
                )));
            };
            let key = key.trim();
            if let Some(account) = section.as_deref().and_then(|s| s.strip_prefix("account.")) {
                let Some(spec) = account_spec(key) else {
                    return Err(ConfigError(format!(
                        "{origin}: unknown key `{key}` in [account.{account}] (known: username, password, session_bundle, session_bundle_file, instances)"
                    )));
                };
                self.accounts
                    .entry(account.to_string())
                    .or_default()
                    .insert(spec.key, (strip_inline_comment(value).to_string(), origin));
                continue;
            }
            let Some(spec) = spec(section.as_deref(), key) else {
                let hint = match spec(None, key) {
                    Some(s) => format!(" (it belongs in [{}])", s.section),
                    None => String::new(),
                };
                return Err(ConfigError(format!("{origin}: unknown key `{key}`{hint}")));
            };
            self.values
                .insert(spec.key, (strip_inline_comment(value).to_string(), origin));
        }
        self.source = Some(path.to_path_buf());
        Ok(())
    }

    /// Applies `LINGMA_GATEWAY_<KEY>` variables from `vars`.
    pub(crate) fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "CONFIG" {
                continue;
            }
            if let Some(account_key) = rest.strip_prefix("ACCOUNT_") {
                // LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY>; the longest key that fits wins
                // (SESSION_BUNDLE_FILE before SESSION_BUNDLE).
                let found = ACCOUNT_KEYS
                    .iter()
                    .filter_map(|k| {
                        let suffix = format!("_{}", k.key.to_ascii_uppercase());
                        account_key
                            .strip_suffix(&suffix)
                            .map(|n| (n.to_ascii_lowercase(), k))
                    })
                    .max_by_key(|(_, k)| k.key.len());
                let Some((account, spec)) = found.filter(|(n, _)| valid_account_name(n)) else {
                    return Err(ConfigError(format!(
                        "environment variable {name}: expected LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY> with KEY one of USERNAME, PASSWORD, SESSION_BUNDLE, SESSION_BUNDLE_FILE, INSTANCES"
                    )));
                };
                self.accounts
                    .entry(account)
                    .or_default()
                    .insert(spec.key, (value, Origin::Env(name.clone())));
                continue;
            }
            let key = rest.to_ascii_lowercase();
            let Some(spec) = spec(None, &key) else {
                return Err(ConfigError(format!(
                    "environment variable {name}: no such setting `{key}` (see gateway.ini for the list)"
                )));
            };
            self.values
                .insert(spec.key, (value, Origin::Env(name.clone())));
        }
        Ok(())
    }

    /// Sets one key from a command-line flag.
    pub(crate) fn set_flag(
        &mut self,
        key: &str,
        value: &str,
        flag: &str,
    ) -> Result<(), ConfigError> {
        let spec = spec(None, key)
            .ok_or_else(|| ConfigError(format!("{flag}: no such setting `{key}`")))?;
        self.values.insert(
            spec.key,
            (value.to_string(), Origin::Flag(flag.to_string())),
        );
        Ok(())
    }

    pub(super) fn get(&self, key: &str) -> (&str, &Origin) {
        let (v, o) = self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("config key {key} not declared in KEYS"));
        (v.as_str(), o)
    }

    /// `key = value` lines for display, secrets replaced.
    pub(crate) fn redacted(&self) -> Vec<(String, String, String)> {
        let shown = |k: &KeySpec, v: &str| {
            if k.secret && !v.is_empty() {
                "<redacted>".to_string()
            } else {
                v.to_string()
            }
        };
        let mut out: Vec<(String, String, String)> = KEYS
            .iter()
            .map(|k| {
                let (v, o) = self.get(k.key);
                (k.key.to_string(), shown(k, v), o.to_string())
            })
            .collect();
        for (name, values) in &self.accounts {
            for k in ACCOUNT_KEYS {
                let (v, o) = values
                    .get(k.key)
                    .map_or((k.default, "default".to_string()), |(v, o)| {
                        (v.as_str(), o.to_string())
                    });
                out.push((format!("account.{name}.{}", k.key), shown(k, v), o));
            }
        }
        out
    }
}

/// Removes a trailing ` ; comment` or ` # comment` (only after whitespace, so values may
/// contain `#` or `;` themselves).
fn strip_inline_comment(value: &str) -> &str {
    let v = value.trim();
    for (i, c) in v.char_indices() {
        if (c == ';' || c == '#') && i > 0 && v[..i].ends_with(char::is_whitespace) {
            return v[..i].trim_end();
        }
    }
    v
}
