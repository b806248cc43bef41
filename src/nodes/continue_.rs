//! `continue`: the "Wait" budget-forcing baseline. It cuts the input attempt's full text at
//! its last `</think>`, appends a suffix (default "Wait"; without a tag, a newline and the
//! suffix), and asks the model to go on from there in one call — on a completions endpoint
//! the chat format leaves that partial assistant turn open. Its `text` is the whole grown
//! context (cut text + suffix + continuation), so the next round continues from it; `new_text`
//! is what this call added, and the answer is read from it. With `append_if_tag_missing: false`
//! an input without `</think>` fails the node (the original tool's default).

use anyhow::Result;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{FieldError, Graded, Kind, KindInfo, Need, NodeCx, Produced};
use crate::calls::split_reasoning;
use crate::llm::{Message, Prompt};

pub struct Continue;

static INFO: KindInfo = KindInfo {
    name: "continue",
    summary: "cuts the input's text at its last </think>, appends a suffix such as \"Wait\", and continues",
    provides: &[
        "prompt",
        "text",
        "new_text",
        "reasoning",
        "answer_text",
        "finish_reason",
        "finish_reasons",
        "usage",
        "round",
        "model",
        "answer",
        "correct",
    ],
    params: &[
        ("suffix", "the text appended after the cut (default `Wait`)"),
        ("system", "a system message (text)"),
        (
            "graded",
            "true (default) or false: false leaves this node out of the grade: block",
        ),
        (
            "append_if_tag_missing",
            "true (default) or false: false fails the node when the input has no `</think>` to cut at",
        ),
    ],
    model: Need::Required,
    prompt: Need::Required,
    input: Need::Required,
    template_vars: &[],
    aggregate: false,
    graded: Graded::ByGradeBlock {
        answer_field: "new_text",
    },
};

/// The fields of a `continue` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub suffix: Option<String>,
    pub system: Option<String>,
    pub graded: Option<bool>,
    pub append_if_tag_missing: Option<bool>,
}

/// The partial answer to continue from.
pub fn cut_and_suffix(text: &str, suffix: &str) -> String {
    match text.rfind("</think>") {
        Some(i) => format!("{}{suffix}", &text[..i]),
        None => format!("{text}\n{suffix}"),
    }
}

#[async_trait]
impl Kind for Continue {
    type Params = Params;

    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        p: &Params,
        _: &crate::spec::Node,
        _: &crate::spec::PipelineSpec,
    ) -> Vec<FieldError> {
        match &p.suffix {
            Some(s) if s.is_empty() => vec![(
                "suffix".into(),
                "`suffix:` is empty".into(),
                Some("give the text to append, e.g. `suffix: Wait`, or leave the field out".into()),
            )],
            _ => Vec::new(),
        }
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let suffix = p.suffix.as_deref().unwrap_or("Wait");
        let mut previous = cx.input_str("text").unwrap_or_default();
        // an attempt whose server put the thinking in `reasoning_content` (a chat endpoint)
        // has it back inline, so the cut lands inside it as with a raw completion
        let reasoning = cx.input_str("reasoning").unwrap_or_default();
        if !previous.contains("</think>") && !reasoning.is_empty() {
            previous = crate::calls::partial_answer(&reasoning, &previous);
        }
        if p.append_if_tag_missing == Some(false) && !previous.contains("</think>") {
            anyhow::bail!(
                "the previous attempt's text has no `</think>` to cut at; set `append_if_tag_missing: true` to append a newline and `{suffix}` instead"
            );
        }
        let partial = cut_and_suffix(&previous, suffix);
        let user = cx.render_prompt(Map::new())?;
        let mut msgs = Vec::new();
        if let Some(s) = &p.system {
            msgs.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        msgs.push(Message {
            role: "user".into(),
            content: user,
        });
        msgs.push(Message {
            role: "assistant".into(),
            content: partial.clone(),
        });
        let model = cx.node.model.as_deref().expect("validated");
        let g = cx
            .generate(model, Prompt::Chat(msgs), json!({"continue": suffix}))
            .await?;
        let mut out = g.output;
        let new_text = out
            .get("text")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        let full = format!("{partial}{new_text}");
        let (reasoning, answer_text) = split_reasoning(&full, None);
        out.insert("text".into(), Value::String(full));
        out.insert("new_text".into(), Value::String(new_text));
        out.insert("reasoning".into(), Value::String(reasoning));
        out.insert("answer_text".into(), Value::String(answer_text));
        if let (true, Some(g)) = (p.graded.unwrap_or(true), cx.pipeline().grade()) {
            super::grade::attach_grade_from(cx, g, &mut out, "new_text").await?;
        }
        Ok(Produced {
            output: out,
            cached: g.info.cached,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_the_last_think_tag() {
        assert_eq!(
            cut_and_suffix("a</think>b</think>\\boxed{1}", "Wait"),
            "a</think>bWait"
        );
        assert_eq!(cut_and_suffix("no tag", "Wait"), "no tag\nWait");
    }
}
