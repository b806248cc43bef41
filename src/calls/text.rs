//! The texts around a call: a reasoning model's reply split into its reasoning and its
//! answer (`<think>` blocks or a reasoning field), a chat prompt, and the prompt that
//! continues a reply cut by its token limit.

use crate::llm::{Message, Prompt};
use crate::spec::model::Endpoint;

/// Splits a response into `reasoning` and `answer_text` (DESIGN.md, settled semantics).
pub fn split_reasoning(text: &str, reasoning_field: Option<&str>) -> (String, String) {
    let reasoning = match reasoning_field {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => match text.find("</think>") {
            Some(i) => text[..i]
                .trim_start()
                .trim_start_matches("<think>")
                .trim()
                .to_string(),
            None => String::new(),
        },
    };
    let answer_text = match text.rfind("</think>") {
        Some(i) => text[i + "</think>".len()..].trim().to_string(),
        None => text.trim().to_string(),
    };
    (reasoning, answer_text)
}

/// Builds a one-message chat prompt from rendered text (the `system:` param adds a system
/// message first).
pub fn chat(system: Option<String>, user: String) -> Prompt {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(Message {
            role: "system".into(),
            content: s,
        });
    }
    msgs.push(Message {
        role: "user".into(),
        content: user,
    });
    Prompt::Chat(msgs)
}

/// The answer so far as the assistant's partial message: a separate reasoning field
/// (`reasoning_content`) goes back inline as the `<think>` part, open while the model was
/// still thinking (no content yet), closed once content began.
pub fn partial_answer(reasoning: &str, text: &str) -> String {
    if reasoning.is_empty() || text.contains("<think>") {
        return text.to_string();
    }
    if text.is_empty() {
        format!("<think>\n{reasoning}")
    } else {
        format!("<think>\n{reasoning}\n</think>\n\n{text}")
    }
}

/// The prompt that continues a cut answer. Raw text is extended. For a completions
/// endpoint the partial answer becomes a trailing assistant message, which the chat format
/// leaves open (prompt + text so far). A chat endpoint cannot continue a message, so it gets
/// the partial answer and a request to go on.
pub(super) fn continue_prompt(original: &Prompt, so_far: &str, endpoint: Endpoint) -> Prompt {
    match original {
        Prompt::Completion(t) => Prompt::Completion(format!("{t}{so_far}")),
        Prompt::Chat(msgs) => {
            let mut m = msgs.clone();
            m.push(Message {
                role: "assistant".into(),
                content: so_far.to_string(),
            });
            if endpoint == Endpoint::Chat {
                m.push(Message {
                    role: "user".into(),
                    content: "Continue exactly where you stopped.".into(),
                });
            }
            Prompt::Chat(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_think_blocks() {
        assert_eq!(
            split_reasoning("<think>a\nb</think>\n\nThe answer", None),
            ("a\nb".into(), "The answer".into())
        );
        assert_eq!(split_reasoning("plain", None), ("".into(), "plain".into()));
        assert_eq!(
            split_reasoning("x</think>y</think>z", Some("R")),
            ("R".into(), "z".into())
        );
    }

    #[test]
    fn a_cut_while_thinking_continues_inside_the_think_block() {
        assert_eq!(partial_answer("so far", ""), "<think>\nso far");
        assert_eq!(
            partial_answer("r", "The answer"),
            "<think>\nr\n</think>\n\nThe answer"
        );
        assert_eq!(partial_answer("", "<think>inline"), "<think>inline");
    }
}
