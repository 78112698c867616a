//! The gateway's one internal form of a chat: request, messages, the stream of events an
//! answer is made of, stop reasons and usage. Every wire protocol translates to and from
//! these; nothing here knows about HTTP or Lingma.

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub text: String,
}

/// A chat request in protocol-neutral form.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The model name as the client wrote it (resolved to a Lingma key later).
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    /// Stop sequences, applied by the gateway (Lingma has no such option).
    pub stop: Vec<String>,
    /// Upper bound on output tokens (estimated); the answer is cut with `StopReason::Length`.
    pub max_tokens: Option<u64>,
    /// Key that should land on the same Lingma instance as before (OpenAI `user`, ...).
    pub affinity: Option<String>,
}

impl ChatRequest {
    /// A stable key for instance affinity: the client's hint, else a hash of the system
    /// prompt or, without one, of the first message.
    pub fn affinity_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match &self.affinity {
            Some(a) => ("hint", a).hash(&mut h),
            None => {
                let first = self
                    .messages
                    .iter()
                    .find(|m| m.role == Role::System)
                    .or_else(|| self.messages.first());
                ("first", first.map(|m| m.text.as_str()).unwrap_or("")).hash(&mut h)
            }
        }
        h.finish()
    }

    /// Flattens the conversation into Lingma's single `questionText`. A lone user message is
    /// sent as it is; anything longer is a transcript with one `[role]` tag per message, so
    /// the model can tell the speakers apart.
    pub fn question_text(&self) -> String {
        let non_empty: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| !m.text.trim().is_empty())
            .collect();
        if let [only] = non_empty.as_slice() {
            if only.role == Role::User {
                return only.text.clone();
            }
        }
        let mut out = String::new();
        for m in non_empty {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push('[');
            out.push_str(m.role.as_str());
            out.push_str("] ");
            out.push_str(&m.text);
        }
        out
    }
}

/// Why an answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    /// One of the request's stop sequences was produced (it is not part of the text).
    StopSequence(String),
    /// `max_tokens` was reached.
    Length,
    /// Lingma's content filter ended the answer (statusCode 406/601).
    ContentFilter,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// One piece of an answer, in order. A stream is zero or more `Text`/`Reasoning` then exactly
/// one `Finish` — or an error instead of the `Finish`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Reasoning(String),
    Finish { reason: StopReason, usage: Usage },
}

/// Token estimate for text (Lingma reports none). Leans high: one token per 3.5 ASCII
/// characters (English averages ~4) and one per non-ASCII character (CJK is ~1 each).
pub fn estimate_tokens(text: &str) -> u64 {
    let mut ascii = 0u64;
    let mut other = 0u64;
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    (ascii * 2).div_ceil(7) + other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, text: &str) -> Message {
        Message {
            role,
            text: text.into(),
        }
    }

    #[test]
    fn lone_user_message_is_sent_verbatim() {
        let r = ChatRequest {
            messages: vec![msg(Role::User, "hi there")],
            ..Default::default()
        };
        assert_eq!(r.question_text(), "hi there");
    }

    #[test]
    fn transcript_tags_each_role() {
        let r = ChatRequest {
            messages: vec![
                msg(Role::System, "be brief"),
                msg(Role::User, "hi"),
                msg(Role::Assistant, "hello"),
                msg(Role::User, "again"),
            ],
            ..Default::default()
        };
        assert_eq!(
            r.question_text(),
            "[system] be brief\n[user] hi\n[assistant] hello\n[user] again"
        );
    }

    #[test]
    fn affinity_prefers_hint_then_system_prompt() {
        let a = ChatRequest {
            messages: vec![msg(Role::System, "S"), msg(Role::User, "x")],
            ..Default::default()
        };
        let b = ChatRequest {
            messages: vec![msg(Role::System, "S"), msg(Role::User, "y")],
            ..Default::default()
        };
        assert_eq!(a.affinity_key(), b.affinity_key());
        let c = ChatRequest {
            affinity: Some("u1".into()),
            ..a.clone()
        };
        assert_ne!(a.affinity_key(), c.affinity_key());
    }

    #[test]
    fn token_estimate_leans_high() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcdefg"), 2);
        assert_eq!(estimate_tokens("你好"), 2);
        assert!(estimate_tokens("The quick brown fox jumps over the lazy dog.") >= 11);
    }
}
