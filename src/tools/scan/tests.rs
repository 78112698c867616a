//! The scanner on answers cut every way: each cut must give the same text and calls.

use super::*;
use serde_json::json;

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "get_weather".into(),
            description: String::new(),
            schema: json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}),
        },
        ToolSpec {
            name: "Bash".into(),
            description: String::new(),
            schema: json!({"type": "object", "required": ["command"]}),
        },
    ]
}

/// Feeds `answer` in deltas of `size` characters; returns (text, calls).
fn scan(answer: &str, size: usize) -> (String, Vec<ToolCall>) {
    let mut s = ToolScanner::new(tools(), true);
    let chars: Vec<char> = answer.chars().collect();
    let mut pieces = Vec::new();
    for chunk in chars.chunks(size) {
        pieces.extend(s.push(&chunk.iter().collect::<String>()));
    }
    pieces.extend(s.finish());
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::Call(c) => calls.push(c),
        }
    }
    (text, calls)
}

fn every_size(answer: &str) -> (String, Vec<ToolCall>) {
    let whole = scan(answer, usize::MAX >> 1);
    for size in [1, 2, 3, 5, 7, 13] {
        let (t, c) = scan(answer, size);
        assert_eq!(t, whole.0, "size {size}");
        assert_eq!(
            c.iter()
                .map(|c| (&c.name, &c.arguments))
                .collect::<Vec<_>>(),
            whole
                .1
                .iter()
                .map(|c| (&c.name, &c.arguments))
                .collect::<Vec<_>>(),
            "size {size}"
        );
    }
    whole
}

#[test]
fn action_block_becomes_a_call_and_text_before_it_streams() {
    let (text, calls) = every_size("I'll check.\n```json action\n{\"tool\": \"get_weather\", \"parameters\": {\"location\": \"Paris\"}}\n```\n");
    assert_eq!(text, "I'll check.\n");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(calls[0].arguments, json!({"location": "Paris"}));
    assert!(calls[0].id.starts_with("call_"));
}

#[test]
fn text_is_released_as_soon_as_it_cannot_open_a_call() {
    let mut s = ToolScanner::new(tools(), true);
    assert_eq!(s.push("Hello wor"), vec![Piece::Text("Hello wor".into())]);
    assert_eq!(s.push("ld\n``"), vec![Piece::Text("ld\n".into())]);
    assert_eq!(
        s.push("`python\nx = 1\n"),
        vec![Piece::Text("```python\nx = 1\n".into())]
    );
}

#[test]
fn tolerant_variants_are_calls() {
    let variants = [
        "```json\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Oslo\"}}\n```",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"location\\\": \\\"Oslo\\\"}\"}\n</tool_call>",
        "{\"tool\": \"get_weather\", \"parameters\": {\"location\": \"Oslo\"}}\n",
        "```json action\n{\"tool\": \"get_weather\", \"parameters\": {\"location\": \"Oslo\"}}",
        "```\n{\"function\": {\"name\": \"get_weather\", \"arguments\": {\"location\": \"Oslo\"}}}\n```",
        "```tool_call\n[{\"tool_name\": \"get_weather\", \"input\": {\"location\": \"Oslo\"}}]\n```",
    ];
    for v in variants {
        let (text, calls) = every_size(v);
        assert_eq!(calls.len(), 1, "{v}: text {text:?}");
        assert_eq!(calls[0].arguments, json!({"location": "Oslo"}), "{v}");
        assert_eq!(text, "", "{v}");
    }
}

#[test]
fn invalid_calls_stay_text() {
    for v in [
        // wrong spelling: never renamed
        "```json action\n{\"tool\": \"GET_WEATHER\", \"parameters\": {\"location\": \"x\"}}\n```\n",
        // required argument missing
        "```json action\n{\"tool\": \"get_weather\", \"parameters\": {}}\n```\n",
        // not JSON
        "```json\nnot json at all\n```\n",
        // ordinary JSON
        "```json\n{\"a\": 1}\n```\n",
        "{\"a\": [1, 2]} is an object\n",
    ] {
        let (text, calls) = every_size(v);
        assert!(calls.is_empty(), "{v}");
        assert_eq!(text, v);
    }
}

#[test]
fn inactive_scanner_passes_everything_but_cards() {
    let mut s = ToolScanner::new(tools(), false);
    let mut out = s
        .push("```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\": \"ls\"}}\n```\n");
    out.extend(s.push("```toolCall::read_file::tc1::INIT\n```\nafter\n"));
    out.extend(s.finish());
    assert_eq!(
        merge(out),
        vec![Piece::Text("```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\": \"ls\"}}\n```\nafter\n".into())]
    );
}

#[test]
fn several_calls_and_text_after_them() {
    let answer = "```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\": \"a\"}}\n```\nAnd then:\n```json action\n{\"tool\": \"Bash\", \"parameters\": {\"command\": \"b\"}}\n```\nResult: made up\n";
    let (text, calls) = every_size(answer);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].arguments, json!({"command": "b"}));
    assert_eq!(
        text, "And then:\n",
        "narration between calls kept, invented results dropped"
    );
}

#[test]
fn braces_in_prose_are_not_held() {
    let mut s = ToolScanner::new(tools(), true);
    assert_eq!(s.push("{ x"), vec![Piece::Text("{ x".into())]);
    let mut s = ToolScanner::new(tools(), true);
    assert_eq!(
        s.push("{\"a\": 1, "),
        vec![Piece::Text("{\"a\": 1, ".into())]
    );
    let mut s = ToolScanner::new(tools(), true);
    assert_eq!(s.push("{\n  \"to"), vec![], "may still open a call");
    let mut out = s.push("ol\": \"Bash\",\n  \"parameters\": {\"command\": \"ls\"}\n}\n");
    out.extend(s.finish());
    assert!(
        matches!(&out[..], [Piece::Call(c)] if c.name == "Bash"),
        "{out:?}"
    );
}

#[test]
fn code_blocks_with_braces_are_not_held_as_calls() {
    let answer = "```rust\nfn main() {\n```\n{ not json\nend\n";
    let (text, calls) = every_size(answer);
    assert!(calls.is_empty());
    assert_eq!(text, answer);
}
