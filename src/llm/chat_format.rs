//! Chat formats: how a list of chat messages becomes one raw text for a `/completions`
//! endpoint (`endpoint: completions` with `chat_format:`). Ships `deepseek_r1` (the
//! DeepSeek-R1 / R1-distill template) and `chatml` (Qwen and friends).

use super::Message;

/// The pieces a chat template wraps around each message. `render` writes `bos`, then each
/// message between its role's prefix and suffix, then `generation_prompt` (the opening of
/// the assistant turn the model is asked to write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatFormat {
    pub name: &'static str,
    pub bos: &'static str,
    pub system_prefix: &'static str,
    pub system_suffix: &'static str,
    pub user_prefix: &'static str,
    pub user_suffix: &'static str,
    pub assistant_prefix: &'static str,
    pub assistant_suffix: &'static str,
    /// Written after the last message. A trailing assistant message (a partial answer to
    /// continue) comes after it and is left open, so the text is the prompt the model first
    /// saw followed by what it wrote.
    pub generation_prompt: &'static str,
    /// Keep only the text after the last `</think>` of earlier assistant turns (what the R1
    /// template does with its history).
    pub strip_think_in_history: bool,
}

/// DeepSeek-R1 and its distills (Qwen/Llama): `<｜begin▁of▁sentence｜>{system}<｜User｜>{u}
/// <｜Assistant｜>{a}<｜end▁of▁sentence｜>…<｜Assistant｜><think>\n`.
pub const DEEPSEEK_R1: ChatFormat = ChatFormat {
    name: "deepseek_r1",
    bos: "<｜begin▁of▁sentence｜>",
    system_prefix: "",
    system_suffix: "",
    user_prefix: "<｜User｜>",
    user_suffix: "",
    assistant_prefix: "<｜Assistant｜>",
    assistant_suffix: "<｜end▁of▁sentence｜>",
    generation_prompt: "<｜Assistant｜><think>\n",
    strip_think_in_history: true,
};

/// ChatML: `<|im_start|>role\n…<|im_end|>\n`, generation prompt `<|im_start|>assistant\n`.
pub const CHATML: ChatFormat = ChatFormat {
    name: "chatml",
    bos: "",
    system_prefix: "<|im_start|>system\n",
    system_suffix: "<|im_end|>\n",
    user_prefix: "<|im_start|>user\n",
    user_suffix: "<|im_end|>\n",
    assistant_prefix: "<|im_start|>assistant\n",
    assistant_suffix: "<|im_end|>\n",
    generation_prompt: "<|im_start|>assistant\n",
    strip_think_in_history: false,
};

/// QwQ-32B and Qwen3 thinking models: ChatML whose generation prompt opens the think block,
/// as their own chat template does.
pub const QWQ: ChatFormat = ChatFormat {
    name: "qwq",
    generation_prompt: "<|im_start|>assistant\n<think>\n",
    ..CHATML
};

/// The shipped format of that name (`deepseek_r1` — also `deepseek-r1`, `r1` — or `chatml`).
pub fn lookup(name: &str) -> Option<ChatFormat> {
    match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "deepseek_r1" | "r1" | "deepseek_r1_distill" => Some(DEEPSEEK_R1),
        "chatml" | "qwen" => Some(CHATML),
        "qwq" => Some(QWQ),
        _ => None,
    }
}

/// Names accepted by [`lookup`], for error messages.
pub const KNOWN: &[&str] = &["deepseek_r1", "chatml", "qwq"];

impl ChatFormat {
    /// The raw prompt for these messages. Unknown roles are treated as `user`. A trailing
    /// assistant message is written after the generation prompt and left open (no suffix),
    /// so `render(msgs + [partial])` is `render(msgs) + partial` and the model continues
    /// exactly where it stopped (for R1, after the `<think>\n` the prompt already held).
    pub fn render(&self, messages: &[Message]) -> String {
        let mut out = String::from(self.bos);
        let n = messages.len();
        for (i, m) in messages.iter().enumerate() {
            let last = i + 1 == n;
            match m.role.as_str() {
                "system" | "developer" => {
                    out.push_str(self.system_prefix);
                    out.push_str(&m.content);
                    out.push_str(self.system_suffix);
                }
                "assistant" => {
                    if last {
                        out.push_str(self.generation_prompt);
                        out.push_str(&m.content);
                        return out;
                    }
                    out.push_str(self.assistant_prefix);
                    let content = if self.strip_think_in_history {
                        m.content.rsplit("</think>").next().unwrap_or("")
                    } else {
                        m.content.as_str()
                    };
                    out.push_str(content);
                    out.push_str(self.assistant_suffix);
                }
                _ => {
                    out.push_str(self.user_prefix);
                    out.push_str(&m.content);
                    out.push_str(self.user_suffix);
                }
            }
        }
        out.push_str(self.generation_prompt);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn r1_matches_the_distill_template() {
        let f = lookup("deepseek_r1").unwrap();
        let s = f.render(&[msg("system", "Be brief."), msg("user", "1+1?")]);
        assert_eq!(
            s,
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>1+1?<｜Assistant｜><think>\n"
        );
        let s = f.render(&[
            msg("user", "a"),
            msg("assistant", "<think>x</think>\n\nB"),
            msg("user", "c"),
        ]);
        assert_eq!(
            s,
            "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜>\n\nB<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜><think>\n"
        );
    }

    #[test]
    fn chatml_renders_turns() {
        let f = lookup("chatml").unwrap();
        let s = f.render(&[msg("system", "S"), msg("user", "U")]);
        assert_eq!(
            s,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(lookup("nope").is_none());
    }

    #[test]
    fn a_trailing_assistant_message_extends_the_prompt() {
        for f in [DEEPSEEK_R1, CHATML, QWQ] {
            let msgs = [msg("system", "S"), msg("user", "U")];
            let mut cont = msgs.to_vec();
            cont.push(msg("assistant", "so far"));
            assert_eq!(
                f.render(&cont),
                format!("{}so far", f.render(&msgs)),
                "{}",
                f.name
            );
        }
    }
}
