//! The simulator's fixed model catalogue and the `config/queryModels` answer built from it.
//! Pure data; used by the connection threads.

use serde_json::{json, Map, Value};

/// One model as the real server lists it (only the fields the simulator varies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Model {
    pub(crate) key: &'static str,
    pub(crate) display_name: &'static str,
    pub(crate) is_reasoning: bool,
    pub(crate) is_vl: bool,
    pub(crate) max_input_tokens: u64,
}

const fn model(key: &'static str, display_name: &'static str, is_reasoning: bool) -> Model {
    Model {
        key,
        display_name,
        is_reasoning,
        is_vl: false,
        max_input_tokens: 131_072,
    }
}

/// Every model, in display order; `order` in the listing is the index here.
pub(crate) const MODELS: &[Model] = &[
    model("auto", "Auto", false),
    model("dashscope_qwen3_coder", "Qwen3-Coder", false),
    model("dashscope_qwen_max_latest", "Qwen-Max", false),
    model(
        "dashscope_qwen_plus_20250428_thinking",
        "Qwen-Plus-Thinking",
        true,
    ),
    model("dashscope_qmodel", "Qwen3-Max", false),
    model("kmodel", "Kimi-K2", false),
    model("mmodel", "MiniMax-M2", false),
];

/// Scenes of `config/queryModels`; `inline` only offers the two code-completion models.
pub(crate) const SCENES: &[&str] = &["chat", "assistant", "developer", "inline", "quest"];
const INLINE_KEYS: &[&str] = &["auto", "dashscope_qwen3_coder"];

/// The model `chat/ask` uses when `extra.modelConfig.key` is absent.
pub(crate) const DEFAULT_KEY: &str = "auto";

pub(crate) fn find(key: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.key == key)
}

/// The `config/queryModels` result: `{}` while logged out, else scene → model list.
pub(crate) fn query_models(logged_in: bool) -> Value {
    let mut scenes = Map::new();
    if logged_in {
        for scene in SCENES {
            let list: Vec<Value> = MODELS
                .iter()
                .enumerate()
                .filter(|(_, m)| *scene != "inline" || INLINE_KEYS.contains(&m.key))
                .map(|(order, m)| to_json(m, order))
                .collect();
            scenes.insert((*scene).to_string(), Value::Array(list));
        }
    }
    Value::Object(scenes)
}

fn to_json(m: &Model, order: usize) -> Value {
    json!({
        "key": m.key,
        "displayName": m.display_name,
        "format": "openai",
        "source": "system",
        "isReasoning": m.is_reasoning,
        "isVl": m.is_vl,
        "isDefault": m.key == DEFAULT_KEY,
        "order": order,
        "maxInputTokens": m.max_input_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_out_lists_nothing() {
        assert_eq!(query_models(false), json!({}));
    }

    #[test]
    fn lists_every_scene_and_inline_is_short() {
        let v = query_models(true);
        for scene in SCENES {
            assert!(v[scene].is_array(), "{scene}");
        }
        assert_eq!(v["chat"].as_array().unwrap().len(), 7);
        let inline: Vec<&str> = v["inline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["key"].as_str().unwrap())
            .collect();
        assert_eq!(inline, vec!["auto", "dashscope_qwen3_coder"]);
        assert_eq!(v["chat"][0]["isDefault"], json!(true));
        assert_eq!(v["chat"][0]["displayName"], json!("Auto"));
        assert_eq!(v["chat"][3]["isReasoning"], json!(true));
        assert_eq!(v["chat"][3]["order"], json!(3));
    }

    #[test]
    fn finds_by_key() {
        assert_eq!(find("kmodel").unwrap().display_name, "Kimi-K2");
        assert!(find("gpt-4").is_none());
    }
}
