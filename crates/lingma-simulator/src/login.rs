//! The simulated browser login: the pending logins that `login/generateUrl` starts (by their
//! `state`), the one-use codes that a successful form submit issues for them, the test
//! credentials the form is checked against, and the `application/x-www-form-urlencoded`
//! decoding the form and the query strings need. Shared by the WebSocket side (which starts
//! logins) and the `sim-http` thread (which completes them); the lock only covers map updates.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a login started by `login/generateUrl` stays usable.
pub(crate) const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// At most this many logins pending at once; starting another drops the oldest.
pub(crate) const MAX_PENDING: usize = 16;

pub(crate) const DEFAULT_USER: &str = "lingma-test";
pub(crate) const DEFAULT_PASSWORD: &str = "lingma-pass";

/// The user name and password the login form accepts. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl Credentials {
    pub(crate) fn matches(&self, user: &str, password: &str) -> bool {
        // Both compared in full, so a wrong user name takes as long as a wrong password.
        let user_ok = self.user == user;
        let password_ok = self.password == password;
        user_ok && password_ok
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            user: DEFAULT_USER.into(),
            password: DEFAULT_PASSWORD.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One login started by `login/generateUrl`.
struct Pending {
    started: Instant,
    /// Issued by a successful form submit: the code and the user it logs in.
    code: Option<(String, String)>,
}

/// Why a callback was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such state, or it expired (or was already completed).
    UnknownState,
    /// The state is pending but the code is not the one issued for it.
    BadCode,
}

#[derive(Default)]
pub(crate) struct Logins {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Logins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a login; returns its `state`.
    pub(crate) fn begin(&self) -> String {
        self.begin_at(Instant::now())
    }

    fn begin_at(&self, now: Instant) -> String {
        let state = random_token();
        let mut pending = self.lock();
        pending.retain(|_, p| live(p, now));
        while pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(s, _)| s.clone());
            match oldest {
                Some(s) => pending.remove(&s),
                None => break,
            };
        }
        pending.insert(
            state.clone(),
            Pending {
                started: now,
                code: None,
            },
        );
        state
    }

    /// Whether `state` is a login still waiting to be completed.
    pub(crate) fn is_pending(&self, state: &str) -> bool {
        self.is_pending_at(state, Instant::now())
    }

    fn is_pending_at(&self, state: &str, now: Instant) -> bool {
        self.lock().get(state).is_some_and(|p| live(p, now))
    }

    /// The credentials were right: issues a fresh code for `state` (replacing one issued
    /// before), or `None` when the state is not pending.
    pub(crate) fn authorize(&self, state: &str, user: &str) -> Option<String> {
        self.authorize_at(state, user, Instant::now())
    }

    fn authorize_at(&self, state: &str, user: &str, now: Instant) -> Option<String> {
        let mut pending = self.lock();
        let p = pending.get_mut(state).filter(|p| live(p, now))?;
        let code = random_token();
        p.code = Some((code.clone(), user.to_string()));
        Some(code)
    }

    /// Completes the login of `state` with `code`: returns the user it logs in. The state
    /// (and with it the code) is used up; a wrong code leaves it pending.
    pub(crate) fn redeem(&self, state: &str, code: &str) -> Result<String, Refused> {
        self.redeem_at(state, code, Instant::now())
    }

    fn redeem_at(&self, state: &str, code: &str, now: Instant) -> Result<String, Refused> {
        let mut pending = self.lock();
        let p = pending
            .get(state)
            .filter(|p| live(p, now))
            .ok_or(Refused::UnknownState)?;
        match &p.code {
            Some((issued, _)) if !code.is_empty() && issued == code => {}
            _ => return Err(Refused::BadCode),
        }
        let p = pending.remove(state).expect("checked above");
        Ok(p.code.expect("checked above").1)
    }
}

fn live(p: &Pending, now: Instant) -> bool {
    now.saturating_duration_since(p.started) < PENDING_TTL
}

/// 32 random hex digits: states, codes, nonces.
pub(crate) fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Decodes an `application/x-www-form-urlencoded` body or a URL query: `&`-separated
/// `name=value` pairs, `+` is a space, `%XX` a byte (the bytes then read as UTF-8, invalid
/// sequences replaced); a `%` not followed by two hex digits stays as it is.
pub(crate) fn decode_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

/// The first value of `name` in a decoded form.
pub(crate) fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    out.push(hex_value(h) << 4 | hex_value(l));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Percent-encodes everything but the URL-safe unreserved characters, for query values.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A user name as it goes into a log line: control characters (a line break could forge
/// a log line) shown escaped.
pub(crate) fn loggable(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        decode_form(text)
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            pairs("state=abc&username=lingma-test&password=lingma-pass"),
            [
                ("state".into(), "abc".into()),
                ("username".into(), "lingma-test".into()),
                ("password".into(), "lingma-pass".into()),
            ]
        );
        // `+` is a space, `%2B` a plus, UTF-8 from escapes, names decoded too.
        let form = pairs("user+name=a+b%2Bc&p=%C3%A9t%C3%A9%20x&%41=1");
        assert_eq!(form_value(&form, "user name"), Some("a b+c"));
        assert_eq!(form_value(&form, "p"), Some("été x"));
        assert_eq!(form_value(&form, "A"), Some("1"));
        // Broken escapes stay literal; a missing `=` means an empty value; empty pairs
        // vanish; the first of repeated names wins.
        let form = pairs("a=100%&b=%zz%4&&c&a=2&d=x=y");
        assert_eq!(form_value(&form, "a"), Some("100%"));
        assert_eq!(form_value(&form, "b"), Some("%zz%4"));
        assert_eq!(form_value(&form, "c"), Some(""));
        assert_eq!(form_value(&form, "d"), Some("x=y"));
        assert_eq!(form_value(&form, "missing"), None);
        assert_eq!(form.len(), 5);
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(form_value(&pairs("x=%FF"), "x"), Some("\u{FFFD}"));
        assert!(pairs("").is_empty());
    }

    #[test]
    fn encoding_round_trips_through_decoding() {
        let text = "a b+c&d=e/é%";
        let encoded = encode_component(text);
        assert_eq!(encoded, "a%20b%2Bc%26d%3De%2F%C3%A9%25");
        assert_eq!(form_value(&pairs(&format!("k={encoded}")), "k"), Some(text));
    }

    #[test]
    fn escaping_for_html_and_logs() {
        assert_eq!(
            html_escape(r#"<b a="x">&'"#),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(loggable("bob\nfake line"), "bob\\nfake line");
        assert_eq!(loggable("plain é"), "plain é");
    }

    #[test]
    fn credentials_check_and_debug_hides_the_password() {
        let c = Credentials::default();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("lingma-test", "lingma-pass")
        );
        assert!(c.matches("lingma-test", "lingma-pass"));
        assert!(!c.matches("lingma-test", "wrong"));
        assert!(!c.matches("other", "lingma-pass"));
        assert!(!c.matches("", ""));
        let shown = format!("{c:?}");
        assert!(shown.contains("lingma-test") && !shown.contains("lingma-pass"));
    }

    #[test]
    fn a_code_logs_in_once() {
        let logins = Logins::default();
        let state = logins.begin();
        assert!(logins.is_pending(&state));
        // No code issued yet: nothing to redeem.
        assert_eq!(logins.redeem(&state, ""), Err(Refused::BadCode));
        let code = logins.authorize(&state, "alice").unwrap();
        assert_ne!(code, state);
        assert_eq!(logins.redeem(&state, "not-the-code"), Err(Refused::BadCode));
        assert!(
            logins.is_pending(&state),
            "a wrong code leaves the login pending"
        );
        assert_eq!(logins.redeem(&state, &code), Ok("alice".into()));
        assert_eq!(logins.redeem(&state, &code), Err(Refused::UnknownState));
        assert!(!logins.is_pending(&state));
        assert_eq!(logins.authorize(&state, "alice"), None);
    }

    #[test]
    fn codes_belong_to_their_state_and_a_new_code_replaces_the_old() {
        let logins = Logins::default();
        let (a, b) = (logins.begin(), logins.begin());
        assert_ne!(a, b);
        let code_a = logins.authorize(&a, "u").unwrap();
        assert_eq!(logins.redeem(&b, &code_a), Err(Refused::BadCode));
        assert_eq!(
            logins.redeem("unknown", &code_a),
            Err(Refused::UnknownState)
        );
        let newer = logins.authorize(&a, "v").unwrap();
        assert_eq!(logins.redeem(&a, &code_a), Err(Refused::BadCode));
        assert_eq!(logins.redeem(&a, &newer), Ok("v".into()));
        assert!(logins.is_pending(&b));
    }

    #[test]
    fn pending_logins_expire_and_are_bounded() {
        let logins = Logins::default();
        let t0 = Instant::now();
        let state = logins.begin_at(t0);
        let code = logins.authorize_at(&state, "u", t0).unwrap();
        let late = t0 + PENDING_TTL;
        assert!(logins.is_pending_at(&state, t0 + PENDING_TTL - Duration::from_secs(1)));
        assert!(!logins.is_pending_at(&state, late));
        assert_eq!(logins.authorize_at(&state, "u", late), None);
        assert_eq!(
            logins.redeem_at(&state, &code, late),
            Err(Refused::UnknownState)
        );
        // Starting another login sweeps the expired one out.
        logins.begin_at(late);
        assert_eq!(logins.lock().len(), 1);

        let logins = Logins::default();
        let first = logins.begin_at(t0);
        let rest: Vec<String> = (1..=MAX_PENDING as u64)
            .map(|i| logins.begin_at(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(logins.lock().len(), MAX_PENDING);
        assert!(!logins.is_pending_at(&first, t0), "the oldest was dropped");
        assert!(rest.iter().all(|s| logins.is_pending_at(s, t0)));
    }
}
