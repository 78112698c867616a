//! Which of Lingma's two dialects a simulator speaks (`--dialect`, `LINGMA_SIM_DIALECT`):
//! cosy only (`chat/ask`, the VS Code extension's runtime), ACP only (`session/*`, the desktop
//! IDE's), or both on one socket (the JetBrains runtime's, the default). A method of the
//! dialect not spoken is refused as an unknown method, as a runtime without it does. Pure.

/// The methods only the cosy dialect has.
const COSY_ONLY: &[&str] = &["chat/ask", "chat/stop"];

pub(crate) const SESSION_NEW: &str = "session/new";
pub(crate) const SESSION_SET_MODEL: &str = "session/set_model";
pub(crate) const SESSION_PROMPT: &str = "session/prompt";
pub(crate) const SESSION_CANCEL: &str = "session/cancel";

/// The ACP methods the simulator serves.
pub(crate) const ACP_METHODS: &[&str] = &[
    SESSION_NEW,
    SESSION_SET_MODEL,
    SESSION_PROMPT,
    SESSION_CANCEL,
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Dialect {
    Cosy,
    Acp,
    #[default]
    Both,
}

impl Dialect {
    pub(crate) fn parse(value: &str) -> Option<Dialect> {
        Some(match value {
            "cosy" => Dialect::Cosy,
            "acp" => Dialect::Acp,
            "both" => Dialect::Both,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dialect::Cosy => "cosy",
            Dialect::Acp => "acp",
            Dialect::Both => "both",
        }
    }

    pub(crate) fn speaks_acp(self) -> bool {
        self != Dialect::Cosy
    }

    /// Whether `method` belongs to a dialect this simulator does not speak.
    pub(crate) fn refuses(self, method: &str) -> bool {
        match self {
            Dialect::Cosy => ACP_METHODS.contains(&method),
            Dialect::Acp => COSY_ONLY.contains(&method),
            Dialect::Both => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_refuses_the_other_ones_methods() {
        assert!(Dialect::Cosy.refuses("session/prompt"));
        assert!(!Dialect::Cosy.refuses("chat/ask"));
        assert!(Dialect::Acp.refuses("chat/ask"));
        assert!(!Dialect::Acp.refuses("session/new"));
        // Shared methods are served by both.
        for d in [Dialect::Cosy, Dialect::Acp, Dialect::Both] {
            for m in ["initialize", "chat/deleteSessionById", "tool/invokeResult"] {
                assert!(!d.refuses(m), "{d:?} {m}");
            }
        }
        assert!(!Dialect::Both.refuses("session/prompt") && !Dialect::Both.refuses("chat/ask"));
        assert_eq!(Dialect::parse("acp"), Some(Dialect::Acp));
        assert_eq!(Dialect::parse("ACP"), None);
        assert_eq!(Dialect::default().as_str(), "both");
    }
}
