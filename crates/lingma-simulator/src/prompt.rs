//! Reads the prompt the gateway renders into `chat/ask.questionText` (the format is shared with
//! the gateway's `prompt` and `tools::contract` modules): `[system]`, `[tools]`, `[user]`,
//! `[assistant]` and `[tool_result NAME call_id=ID]` sections, the declared tools with their
//! JSON schemas and the tool choice, the latest turn, and the retry instruction. A question
//! without any header line is one user section. Pure code, tested on string literals.
//!
//! Public (`read`, `parse_tools` and what they return) so that the gateway's tests check the
//! simulator reads what the gateway renders.

use serde_json::Value;

/// The phrase that marks the gateway's retry instruction for a forced tool call.
pub(crate) const RETRY_MARKER: &str = "Your previous answer did not call a tool";

/// How the gateway's answer-format instruction starts, and the line with its schema.
pub(crate) const FORMAT_MARKER: &str = "Answer format: one JSON value";
const FORMAT_SCHEMA_LINE: &str = "JSON schema: ";

const TOOL_HEADING: &str = "## Tool: ";
const SCHEMA_LINE: &str = "Parameters (JSON schema): ";
const CHOICE_LINE: &str = "Tool choice: ";

/// What a section header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No header: the text of a question without header lines (or before the first one).
    Plain,
    System,
    Tools,
    User,
    Assistant,
    ToolResult {
        name: String,
        call_id: String,
        error: bool,
    },
}

/// One section: its kind and its body (the lines up to the next header, without the blank
/// separator line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section<'a> {
    pub(crate) kind: Kind,
    pub(crate) text: &'a str,
}

/// The kind a header line names; `None` when `line` is not a header line. Trailing spaces
/// (and a `\r`) are tolerated, leading ones are not: a header starts its line.
pub(crate) fn header(line: &str) -> Option<Kind> {
    let line = line.trim_end();
    let kind = match line {
        "[system]" => Kind::System,
        "[tools]" => Kind::Tools,
        "[user]" => Kind::User,
        "[assistant]" => Kind::Assistant,
        _ => {
            let inner = line.strip_prefix("[tool_result ")?.strip_suffix(']')?;
            let mut words = inner.split(' ');
            let name = words.next().filter(|n| !n.is_empty())?;
            let call_id = words.next()?.strip_prefix("call_id=")?;
            let error = match words.next() {
                None => false,
                Some("error") => true,
                Some(_) => return None,
            };
            if words.next().is_some() {
                return None;
            }
            Kind::ToolResult {
                name: name.to_string(),
                call_id: call_id.to_string(),
                error,
            }
        }
    };
    Some(kind)
}

/// Splits `question` into sections. Without any header line the whole question is one
/// `Plain` section, untouched; otherwise non-blank text before the first header is a `Plain`
/// section, and every body loses its trailing line breaks.
pub(crate) fn sections(question: &str) -> Vec<Section<'_>> {
    // (byte offset of the header line, offset of the body, kind)
    let mut heads: Vec<(usize, usize, Kind)> = Vec::new();
    let mut offset = 0;
    for line in question.split_inclusive('\n') {
        if let Some(kind) = header(line) {
            heads.push((offset, offset + line.len(), kind));
        }
        offset += line.len();
    }
    if heads.is_empty() {
        return vec![Section {
            kind: Kind::Plain,
            text: question,
        }];
    }
    let body = |from: usize, to: usize| question[from..to].trim_end_matches(['\n', '\r']);
    let mut out = Vec::with_capacity(heads.len() + 1);
    let before = body(0, heads[0].0);
    if !before.trim().is_empty() {
        out.push(Section {
            kind: Kind::Plain,
            text: before,
        });
    }
    for (i, (_, start, kind)) in heads.iter().enumerate() {
        let end = heads.get(i + 1).map_or(question.len(), |h| h.0);
        out.push(Section {
            kind: kind.clone(),
            text: body(*start, end),
        });
    }
    out
}

/// The tool choice line of the `[tools]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// `required`, any tool.
    Any,
    /// `required`, this tool.
    Named(String),
}

/// One declared tool. `schema` is `Null` when the schema line is missing or not JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub schema: Value,
}

/// The `[tools]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
}

impl Tools {
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Parses the body of a `[tools]` section. A tool runs from its `## Tool: NAME` line to its
/// `Parameters (JSON schema): ` line, so description lines that look like headings stay in
/// the description. A missing or unreadable choice line means `auto`.
pub fn parse_tools(text: &str) -> Tools {
    let mut tools = Vec::new();
    let mut choice = None;
    // The tool whose schema line has not come yet.
    let mut open: Option<Tool> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(tool) = open.as_mut() {
            if let Some(schema) = line.strip_prefix(SCHEMA_LINE) {
                tool.schema = serde_json::from_str(schema).unwrap_or(Value::Null);
                tools.extend(open.take());
            }
        } else if let Some(name) = line.strip_prefix(TOOL_HEADING) {
            open = Some(Tool {
                name: name.trim().to_string(),
                schema: Value::Null,
            });
        } else if let Some(rest) = line.strip_prefix(CHOICE_LINE) {
            if tools.is_empty() && choice.is_none() {
                choice = parse_choice(rest);
            }
        }
    }
    tools.extend(open);
    Tools {
        tools,
        choice: choice.unwrap_or(ToolChoice::Auto),
    }
}

fn parse_choice(rest: &str) -> Option<ToolChoice> {
    const NAMED: &str = "required. You must call the tool \"";
    if rest.starts_with("auto") {
        Some(ToolChoice::Auto)
    } else if rest.starts_with("none") {
        Some(ToolChoice::None)
    } else if let Some(named) = rest.strip_prefix(NAMED) {
        let end = named
            .rfind("\" in this answer")
            .or_else(|| named.rfind('"'))?;
        Some(ToolChoice::Named(named[..end].to_string()))
    } else if rest.starts_with("required") {
        Some(ToolChoice::Any)
    } else {
        None
    }
}

/// One `[tool_result ...]` section of the latest turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult<'a> {
    pub name: String,
    pub call_id: String,
    pub error: bool,
    pub text: &'a str,
}

/// What the simulator needs from a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt<'a> {
    /// The `[tools]` section, if any.
    pub tools: Option<Tools>,
    /// The latest user text: the last `[user]` (or headerless) section after the last
    /// `[assistant]` one, else the last one anywhere; `""` when there is none. For a question
    /// without headers, the whole question.
    pub user: &'a str,
    /// The `[tool_result]` sections after the last `[assistant]` section; not empty means
    /// this is a tool-result turn.
    pub results: Vec<ToolResult<'a>>,
    /// The last section is a `[system]` section with the retry instruction.
    pub retry: bool,
    /// How many sections the question has (1 for a question without headers).
    pub sections: usize,
    /// The latest turn asks for a JSON answer: `Some(schema)`, the schema `Null` when any
    /// JSON object will do.
    pub json_format: Option<Value>,
}

impl Prompt<'_> {
    pub fn tool_result_turn(&self) -> bool {
        !self.results.is_empty()
    }
}

/// Reads a whole question.
pub fn read(question: &str) -> Prompt<'_> {
    let sections = sections(question);
    let tools = sections
        .iter()
        .find(|s| s.kind == Kind::Tools)
        .map(|s| parse_tools(s.text));
    let turn_start = sections
        .iter()
        .rposition(|s| s.kind == Kind::Assistant)
        .map_or(0, |i| i + 1);
    let latest = &sections[turn_start..];
    let is_user = |s: &&Section| matches!(s.kind, Kind::User | Kind::Plain);
    let user = latest
        .iter()
        .rfind(is_user)
        .or_else(|| sections.iter().rfind(is_user))
        .map_or("", |s| s.text);
    let results = latest
        .iter()
        .filter_map(|s| match &s.kind {
            Kind::ToolResult {
                name,
                call_id,
                error,
            } => Some(ToolResult {
                name: name.clone(),
                call_id: call_id.clone(),
                error: *error,
                text: s.text,
            }),
            _ => None,
        })
        .collect();
    let retry = sections
        .last()
        .is_some_and(|s| s.kind == Kind::System && s.text.contains(RETRY_MARKER));
    let json_format = latest
        .iter()
        .rfind(|s| s.kind == Kind::System && s.text.starts_with(FORMAT_MARKER))
        .map(|s| {
            s.text
                .lines()
                .find_map(|l| l.strip_prefix(FORMAT_SCHEMA_LINE))
                .and_then(|schema| serde_json::from_str(schema).ok())
                .unwrap_or(Value::Null)
        });
    Prompt {
        tools,
        user,
        results,
        retry,
        sections: sections.len(),
        json_format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_whole_lines() {
        assert_eq!(header("[user]"), Some(Kind::User));
        assert_eq!(header("[system]\r\n"), Some(Kind::System));
        assert_eq!(header(" [user]"), None);
        assert_eq!(header("[user] hi"), None);
        assert_eq!(
            header("[tool_result Bash call_id=toolu_01 error]\n"),
            Some(Kind::ToolResult {
                name: "Bash".into(),
                call_id: "toolu_01".into(),
                error: true
            })
        );
        assert_eq!(
            header("[tool_result get_weather call_id=c1]"),
            Some(Kind::ToolResult {
                name: "get_weather".into(),
                call_id: "c1".into(),
                error: false
            })
        );
        assert_eq!(header("[tool_result Bash]"), None);
        assert_eq!(header("[tool_result Bash call_id=1 oops]"), None);
        assert_eq!(header("[tool_result Bash call_id=1 error x]"), None);
    }

    #[test]
    fn a_question_without_headers_is_one_plain_section() {
        let q = "line one\n[user] not a header\n\n";
        assert_eq!(
            sections(q),
            vec![Section {
                kind: Kind::Plain,
                text: q
            }]
        );
        let p = read(q);
        assert_eq!((p.user, p.sections, p.retry), (q, 1, false));
        assert!(p.tools.is_none() && !p.tool_result_turn());
    }

    #[test]
    fn sections_split_on_header_lines() {
        let q = "preamble\n\n[system]\nbe brief\n\nand kind\n\n[user]\nhi\n\n[assistant]\nhello\n\n[tool_result x call_id=1]\nout\n";
        let kinds: Vec<(Kind, &str)> = sections(q).into_iter().map(|s| (s.kind, s.text)).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Plain, "preamble"),
                (Kind::System, "be brief\n\nand kind"),
                (Kind::User, "hi"),
                (Kind::Assistant, "hello"),
                (
                    Kind::ToolResult {
                        name: "x".into(),
                        call_id: "1".into(),
                        error: false
                    },
                    "out"
                ),
            ]
        );
        // An empty body right before the next header.
        let s = sections("[user]\n[assistant]\nx");
        assert_eq!((s[0].text, s[1].text), ("", "x"));
    }

    #[test]
    fn bad_or_missing_schemas_are_null() {
        let t = parse_tools("## Tool: a\nParameters (JSON schema): {not json\n## Tool: b\ndesc");
        assert_eq!(t.tools.len(), 2);
        assert!(t.tools.iter().all(|t| t.schema.is_null()));
        assert_eq!(t.choice, ToolChoice::Auto);
    }

    #[test]
    fn tool_results_after_the_last_assistant_make_a_tool_result_turn() {
        let q = "[user]\nweather? [[sim:tool=get_weather]]\n\n[assistant]\nI'll call get_weather now.\n```json action\n{\"tool\": \"get_weather\", \"parameters\": {}}\n```\n\n[tool_result get_weather call_id=toolu_01]\nsunny, 21C\n\n[tool_result Bash call_id=toolu_02 error]\nexit 1\n\n[user]\nand now?";
        let p = read(q);
        assert!(p.tool_result_turn());
        assert_eq!(
            p.results,
            vec![
                ToolResult {
                    name: "get_weather".into(),
                    call_id: "toolu_01".into(),
                    error: false,
                    text: "sunny, 21C"
                },
                ToolResult {
                    name: "Bash".into(),
                    call_id: "toolu_02".into(),
                    error: true,
                    text: "exit 1"
                },
            ]
        );
        assert_eq!(p.user, "and now?");
        // Results of earlier turns do not count.
        let q = "[user]\na\n\n[assistant]\ncall\n\n[tool_result x call_id=1]\nr\n\n[assistant]\ndone\n\n[user]\nb";
        let p = read(q);
        assert!(!p.tool_result_turn());
        assert_eq!(p.user, "b");
        // Without user text in the latest turn, the last user section is the user text.
        let p = read("[user]\nstart\n\n[assistant]\nc\n\n[tool_result x call_id=1]\nr");
        assert_eq!((p.user, p.results.len()), ("start", 1));
    }

    #[test]
    fn retry_marker_only_in_a_trailing_system_section() {
        let retry = "[system]\nYour previous answer did not call a tool, but this answer must. Reply with only a ```json action block that calls one of the tools with all its required parameters.";
        let q = format!("[user]\nhi\n\n{retry}");
        let p = read(&q);
        assert!(p.retry);
        assert_eq!(p.user, "hi");
        assert!(!read(&format!("{retry}\n\n[user]\nhi")).retry);
        assert!(!read(&format!("[user]\n{RETRY_MARKER}")).retry);
    }
}
