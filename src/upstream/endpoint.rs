//! Where an instance's WebSocket is and what its upgrade request carries: the port (from a
//! discovery file), the path (`/`, or `/ws` for the Qoder CN sidecar) and an optional header
//! such as its `Cosy-MachineToken`. The header's value is a secret: `Debug` hides it, and no
//! error repeats it. Pure; the supervisor builds one per connection attempt.

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::http::{HeaderName, HeaderValue};

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) port: u16,
    /// Starts with `/`.
    pub(crate) path: String,
    /// Name and value.
    pub(crate) header: Option<(String, String)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("port", &self.port)
            .field("path", &self.path)
            .field(
                "header",
                &self.header.as_ref().map(|(n, _)| (n, "<redacted>")),
            )
            .finish()
    }
}

impl Endpoint {
    /// A plain Lingma's: `ws://127.0.0.1:<port>/`, no header.
    #[cfg(test)]
    pub(crate) fn plain(port: u16) -> Endpoint {
        Endpoint {
            port,
            path: "/".into(),
            header: None,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, self.path)
    }

    /// The upgrade request (tungstenite adds the WebSocket headers).
    pub(crate) fn request(&self) -> Result<Request, String> {
        let mut req = self
            .url()
            .into_client_request()
            .map_err(|e| format!("bad WebSocket URL {}: {e}", self.url()))?;
        if let Some((name, value)) = &self.header {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name} is not a header value"))?;
            value.set_sensitive(true);
            req.headers_mut().insert(name, value);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_path_and_header_and_debug_hides_the_value() {
        let e = Endpoint {
            port: 4321,
            path: "/ws".into(),
            header: Some(("Cosy-MachineToken".into(), "tok-secret".into())),
        };
        let req = e.request().unwrap();
        assert_eq!(req.uri().to_string(), "ws://127.0.0.1:4321/ws");
        assert_eq!(req.headers()["cosy-machinetoken"], "tok-secret");
        assert!(!format!("{e:?}").contains("tok-secret"));
        let plain = Endpoint::plain(37010).request().unwrap();
        assert_eq!(plain.uri().to_string(), "ws://127.0.0.1:37010/");
        assert!(!plain.headers().contains_key("cosy-machinetoken"));
    }

    #[test]
    fn a_value_a_header_cannot_carry_is_an_error_without_the_value() {
        let e = Endpoint {
            port: 1,
            path: "/".into(),
            header: Some(("X-Token".into(), "bad\nsecret".into())),
        };
        let err = e.request().unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
