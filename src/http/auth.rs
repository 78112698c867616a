//! Client API keys: `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in
//! constant time (digests of equal length, every byte and every key visited).

use sha1::{Digest, Sha1};

use super::exchange::{Exchange, Head};
use crate::error::{ErrorKind, GatewayError};

pub(crate) struct ApiKeys {
    digests: Vec<[u8; 20]>,
}

fn digest(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(&Sha1::digest(s.as_bytes()));
    out
}

impl ApiKeys {
    pub(crate) fn new(keys: &[String]) -> Self {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k)).collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        let mut ok = false;
        for k in &self.digests {
            let diff = k
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            ok |= diff == 0;
        }
        ok
    }

    /// Passes when no keys are configured or the request carries one of them.
    pub(crate) fn check(&self, head: &Head<'_>) -> Result<(), GatewayError> {
        if self.is_empty() {
            return Ok(());
        }
        self.verify(head)
    }

    /// Passes only when the request carries one of the keys (none configured: never).
    fn verify(&self, head: &Head<'_>) -> Result<(), GatewayError> {
        match presented(head) {
            None => Err(GatewayError::new(
                ErrorKind::Authentication,
                "Missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            )
            .with_code("missing_api_key")),
            Some(k) if self.accepts(k) => Ok(()),
            Some(_) => Err(GatewayError::new(
                ErrorKind::Authentication,
                "Incorrect API key provided.",
            )
            .with_code("invalid_api_key")),
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, else `x-api-key`.
pub(crate) fn presented<'a>(head: &Head<'a>) -> Option<&'a str> {
    let bearer = head.header("authorization").and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    bearer
        .or_else(|| head.header("x-api-key").map(str::trim))
        .filter(|k| !k.is_empty())
}

/// Whose conversations a request belongs to, for session reuse: a digest of its key (never
/// the key itself).
pub(crate) fn scope(ex: &Exchange) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(40);
    for b in digest(presented(&ex.head()).unwrap_or("")) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Who may read `/internal/*` and `/metrics`.
///
/// - `/internal/*`: `admin_token`; when it is empty, the API keys.
/// - `/metrics`: anyone with `metrics_public`; else `metrics_token` or the admin credential.
///
/// With no credential configured at all, these routes answer only when the gateway listens
/// on a loopback address (only local clients can reach it, and the whole gateway is open
/// anyway, warned at startup); beyond loopback they refuse with 403 until a token is set.
pub(crate) struct OperatorAuth {
    admin: ApiKeys,
    /// `admin_token` alone, never the API keys: exporting a login needs it.
    admin_token: ApiKeys,
    metrics: ApiKeys,
    metrics_public: bool,
    loopback: bool,
}

impl OperatorAuth {
    pub(crate) fn new(cfg: &crate::config::Config) -> Self {
        let admin: Vec<String> = match &cfg.admin_token {
            Some(t) => vec![t.clone()],
            None => cfg.api_keys.clone(),
        };
        let metrics: Vec<String> = cfg
            .metrics_token
            .iter()
            .cloned()
            .chain(admin.iter().cloned())
            .collect();
        OperatorAuth {
            admin_token: ApiKeys::new(cfg.admin_token.as_slice()),
            admin: ApiKeys::new(&admin),
            metrics: ApiKeys::new(&metrics),
            metrics_public: cfg.metrics_public,
            loopback: cfg.host.is_loopback(),
        }
    }

    pub(crate) fn check_admin(&self, head: &Head<'_>) -> Result<(), GatewayError> {
        self.check(&self.admin, head, "admin_token")
    }

    pub(crate) fn check_metrics(&self, head: &Head<'_>) -> Result<(), GatewayError> {
        if self.metrics_public {
            return Ok(());
        }
        self.check(&self.metrics, head, "metrics_token (or admin_token)")
    }

    /// A login leaves the machine only with `admin_token`: not with an API key, and not
    /// without any credential on loopback (a page in the user's browser can reach that).
    pub(crate) fn check_export(&self, head: &Head<'_>) -> Result<(), GatewayError> {
        if self.admin_token.is_empty() {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "Exporting a login needs admin_token: set it, and send it as `Authorization: Bearer <admin_token>`.",
            )
            .with_code("no_credential_configured"));
        }
        self.admin_token.verify(head)
    }

    fn check(&self, keys: &ApiKeys, head: &Head<'_>, what: &str) -> Result<(), GatewayError> {
        if !keys.is_empty() {
            return keys.verify(head);
        }
        if self.loopback {
            return Ok(());
        }
        Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            format!(
                "This route needs a credential and none is configured: set {what} (or api_keys)."
            ),
        )
        .with_code("no_credential_configured"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = ApiKeys::new(&["sk-a".to_string(), "sk-b".to_string()]);
        assert!(keys.accepts("sk-a") && keys.accepts("sk-b"));
        assert!(!keys.accepts("sk-") && !keys.accepts("sk-ab") && !keys.accepts(""));
    }
}
