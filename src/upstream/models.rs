//! Lingma's model catalogue (`config/queryModels`) and the resolution of a client's model
//! name to a Lingma model key (pure), and the context sizes turns reported per model
//! (`ContextSizes`, shared by the worker threads).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::Value;

/// Models whose context size is remembered, at most (a catalogue has about ten).
const MAX_SIZED_MODELS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub key: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub is_reasoning: bool,
    #[serde(default)]
    pub is_vl: bool,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub order: i64,
    #[serde(default)]
    pub max_input_tokens: Option<u64>,
}

/// Every distinct model, `chat` scene first, in Lingma's `order`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
}

/// Scenes in the order their models are listed; unknown scenes follow.
const SCENES: &[&str] = &["chat", "assistant", "developer", "quest", "inline"];

impl ModelList {
    /// Parses the `config/queryModels` result (`{scene: [model, ...]}`; `{}` when logged out).
    pub fn from_query(result: &Value) -> ModelList {
        let mut models: Vec<ModelInfo> = Vec::new();
        let Some(obj) = result.as_object() else {
            return ModelList::default();
        };
        let mut scenes: Vec<&String> = obj.keys().collect();
        scenes.sort_by_key(|s| SCENES.iter().position(|k| k == s).unwrap_or(SCENES.len()));
        for scene in scenes {
            let mut in_scene: Vec<ModelInfo> = obj[scene.as_str()]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| serde_json::from_value::<ModelInfo>(m.clone()).ok())
                        .collect()
                })
                .unwrap_or_default();
            in_scene.sort_by_key(|m| m.order);
            for m in in_scene {
                if !m.key.is_empty() && !models.iter().any(|x| x.key == m.key) {
                    models.push(m);
                }
            }
        }
        ModelList { models }
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn by_key(&self, key: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.key == key)
    }

    /// Resolves a requested model: "" or "default" → the configured default (or Lingma's
    /// own default if that key is not offered); else an exact key, a display name (any case),
    /// or an alias (`name=key`, `prefix*=key`). `None` means unknown.
    pub fn resolve(
        &self,
        requested: &str,
        default_model: &str,
        aliases: &[(String, String)],
    ) -> Option<&ModelInfo> {
        let requested = requested.trim();
        if requested.is_empty() || requested.eq_ignore_ascii_case("default") {
            return self
                .by_key(default_model)
                .or_else(|| self.models.iter().find(|m| m.is_default));
        }
        if let Some(m) = self.by_key(requested) {
            return Some(m);
        }
        if let Some(m) = self
            .models
            .iter()
            .find(|m| !m.display_name.is_empty() && m.display_name.eq_ignore_ascii_case(requested))
        {
            return Some(m);
        }
        aliases
            .iter()
            .find(|(name, _)| match name.strip_suffix('*') {
                Some(prefix) => requested.starts_with(prefix),
                None => name == requested,
            })
            .and_then(|(_, key)| self.resolve_key(key, default_model))
    }

    fn resolve_key(&self, key: &str, default_model: &str) -> Option<&ModelInfo> {
        if key.eq_ignore_ascii_case("default") {
            return self.resolve("", default_model, &[]);
        }
        self.by_key(key)
    }
}

/// The context size (`limitTokens`) Lingma's turns last reported per model key: known once
/// a model has answered, and then preferred to the catalogue's `maxInputTokens`.
#[derive(Default)]
pub(crate) struct ContextSizes {
    by_key: Mutex<BTreeMap<String, u64>>,
}

impl ContextSizes {
    /// Notes what a turn of model `key` reported (keys are the catalogue's, so few; past
    /// `MAX_SIZED_MODELS` a new one is not kept).
    pub(crate) fn note(&self, key: &str, limit: u64) {
        let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if by_key.len() < MAX_SIZED_MODELS || by_key.contains_key(key) {
            by_key.insert(key.to_string(), limit);
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        let by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        by_key.get(key).copied()
    }

    /// Every size known, by model key.
    pub(crate) fn all(&self) -> BTreeMap<String, u64> {
        self.by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> ModelList {
        ModelList::from_query(&json!({
            "inline": [{"key": "auto", "displayName": "Auto", "order": 0}],
            "chat": [
                {"key": "kmodel", "displayName": "Kimi-K2", "order": 4},
                {"key": "auto", "displayName": "Auto", "isDefault": true, "order": 0},
                {"key": "dashscope_qwen_plus_20250428_thinking", "displayName": "Qwen-Plus-Thinking", "isReasoning": true, "order": 3},
            ],
            "quest": [{"key": "mmodel", "displayName": "MiniMax-M2", "order": 1}, {"bad": true}],
        }))
    }

    #[test]
    fn flattens_scenes_chat_first_deduplicated_in_order() {
        let l = list();
        let keys: Vec<&str> = l.models.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "auto",
                "dashscope_qwen_plus_20250428_thinking",
                "kmodel",
                "mmodel"
            ]
        );
        assert!(list().models[1].is_reasoning);
    }

    #[test]
    fn logged_out_is_empty() {
        assert!(ModelList::from_query(&json!({})).is_empty());
        assert!(ModelList::from_query(&json!(null)).is_empty());
    }

    #[test]
    fn resolves_key_display_name_default_and_aliases() {
        let l = list();
        let aliases = vec![
            ("gpt-4o".to_string(), "kmodel".to_string()),
            ("claude-*".to_string(), "default".to_string()),
        ];
        let r = |q: &str| l.resolve(q, "auto", &aliases).map(|m| m.key.clone());
        assert_eq!(r("kmodel").as_deref(), Some("kmodel"));
        assert_eq!(r("kimi-k2").as_deref(), Some("kmodel"));
        assert_eq!(r("").as_deref(), Some("auto"));
        assert_eq!(r("default").as_deref(), Some("auto"));
        assert_eq!(r("gpt-4o").as_deref(), Some("kmodel"));
        assert_eq!(r("claude-opus-4-8").as_deref(), Some("auto"));
        assert_eq!(r("gpt-5"), None);
        assert_eq!(
            l.resolve("", "missing", &[]).map(|m| m.key.as_str()),
            Some("auto")
        );
    }

    #[test]
    fn context_sizes_keep_the_last_report_per_model_and_are_bounded() {
        let sizes = ContextSizes::default();
        assert_eq!(sizes.get("auto"), None);
        sizes.note("auto", 1000);
        sizes.note("auto", 131_072);
        assert_eq!(sizes.get("auto"), Some(131_072));
        for i in 0..MAX_SIZED_MODELS + 10 {
            sizes.note(&format!("m{i}"), 1);
        }
        assert_eq!(sizes.all().len(), MAX_SIZED_MODELS);
        sizes.note("auto", 7);
        assert_eq!(sizes.get("auto"), Some(7), "a known model is updated");
    }
}
