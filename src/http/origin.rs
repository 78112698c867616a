//! Which sites may talk to a gateway that has no API keys (DNS-rebinding and cross-site
//! defence). Without keys, anything that can reach the port can use the Lingma account, and
//! "anything" includes a web page in the user's browser: a page whose name is made to
//! resolve to 127.0.0.1 (DNS rebinding) sends its own name as `Host`, and a page of another
//! site sends its `Origin`. So without keys only these `Host` names are served: IP addresses
//! (a page cannot rebind to a literal), `localhost` and `*.localhost`, and the operator's
//! `allowed_hosts`; a request with an `Origin` whose host is not one of them is refused too.
//! With keys, a browser cannot attach the key to a cross-site request without a CORS
//! preflight the gateway never grants, so nothing more is needed. Pure.

use std::net::IpAddr;

use super::exchange::Head;
use crate::error::{ErrorKind, GatewayError};

/// Refuses a request from a host or origin a keyless gateway does not serve.
pub(crate) fn check(head: &Head<'_>, allowed: &[String]) -> Result<(), GatewayError> {
    if let Some(host) = head.header("host") {
        if !host_allowed(strip_port(host), allowed) {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "This gateway has no api_keys, so it only serves requests addressed to an IP address or localhost; the Host {host:?} is not one (add it to allowed_hosts, or set api_keys)."
                ),
            )
            .with_code("host_not_allowed"));
        }
    }
    if let Some(origin) = head.header("origin") {
        let allowed_origin = origin_host(origin).is_some_and(|h| host_allowed(h, allowed));
        if !allowed_origin {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "This gateway has no api_keys, so it refuses requests from web pages of other sites (Origin {origin:?}); add the site's host to allowed_hosts, or set api_keys."
                ),
            )
            .with_code("origin_not_allowed"));
        }
    }
    Ok(())
}

/// `host[:port]` or `[v6]:port` → the host.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(authority, |(ip, _)| ip);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The host of a serialized origin, `scheme://host[:port]` (`null` has none).
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    (!rest.is_empty() && !rest.contains('/')).then(|| strip_port(rest))
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    allowed.iter().any(|a| match a.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(a.as_str()),
        None => host == *a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(host: &str) -> bool {
        host_allowed(strip_port(host), &["gw.lan".into(), ".corp.example".into()])
    }

    #[test]
    fn ip_literals_localhost_and_configured_names_are_served() {
        for h in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "192.168.1.5:80",
            "localhost",
            "LOCALHOST:1",
            "app.localhost:3000",
            "localhost.",
            "gw.lan:8080",
            "corp.example",
            "a.b.corp.example",
        ] {
            assert!(allowed(h), "{h}");
        }
        for h in [
            "attacker.com",
            "127.0.0.1.nip.io",
            "localhost.attacker.com",
            "xgw.lan",
            "evilcorp.example",
            "",
        ] {
            assert!(!allowed(h), "{h}");
        }
    }

    #[test]
    fn origins_are_judged_by_their_host() {
        let ok = |o: &str| origin_host(o).is_some_and(|h| host_allowed(h, &[]));
        assert!(ok("http://localhost:3000"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("https://[::1]"));
        assert!(!ok("https://attacker.com"));
        assert!(!ok("null"));
        assert!(!ok("file://"));
        assert!(!ok("chrome-extension://abc"));
        assert!(!ok("http://localhost/path"));
    }
}
