//! Client API keys: `Authorization: Bearer <key>` or `x-api-key: <key>`, compared in
//! constant time (digests of equal length, every byte and every key visited).

use sha1::{Digest, Sha1};

use super::exchange::Exchange;
use crate::error::{ErrorKind, GatewayError};

pub struct ApiKeys {
    digests: Vec<[u8; 20]>,
}

fn digest(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(&Sha1::digest(s.as_bytes()));
    out
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn accepts(&self, presented: &str) -> bool {
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
    pub fn check(&self, ex: &Exchange) -> Result<(), GatewayError> {
        if self.is_empty() {
            return Ok(());
        }
        let bearer = ex.header("authorization").and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let presented = bearer
            .or_else(|| ex.header("x-api-key").map(str::trim))
            .filter(|k| !k.is_empty());
        match presented {
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
