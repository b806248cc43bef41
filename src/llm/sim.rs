//! `sim`: a built-in, deterministic SIMULATED reasoner for demos, tests and benchmarks. It
//! is not a language model. It reads the problem's ground truth from the call context (never
//! from the prompt, never part of a cache key) and answers right with probability
//! `base_accuracy + gain_per_summary × (earlier attempts the prompt labels "Attempt N")`,
//! capped at 0.95. A prompt that asks to "summarize" is answered with a short summary;
//! a raw-completion prompt is continued with a short second thought. Its text depends only
//! on the request and the sample index; latency (configurable) never changes what it says.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{CallContext, CallError, CallRequest, CallResponse, Prompt, Provider, Usage};
use crate::spec::model::SimSettings;

pub struct SimProvider {
    settings: SimSettings,
}

impl SimProvider {
    pub fn new(settings: SimSettings) -> Self {
        SimProvider { settings }
    }
}

const WORDS: [&str; 24] = [
    "consider",
    "the",
    "constraint",
    "so",
    "we",
    "substitute",
    "and",
    "check",
    "whether",
    "this",
    "case",
    "holds",
    "then",
    "simplify",
    "both",
    "sides",
    "which",
    "gives",
    "a",
    "candidate",
    "value",
    "wait",
    "recheck",
    "carefully",
];

/// Approximate tokens of a text (4 characters a token), as the simulation reports usage.
pub fn approx_tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4)
}

fn wrong_answer(truth: &str, r: u64) -> String {
    let t = truth.trim();
    if let Ok(n) = t.parse::<i64>() {
        let delta = 1 + (r % 97) as i64;
        return (if r.is_multiple_of(2) {
            n + delta
        } else {
            (n - delta).abs() + 1000 * ((n - delta) < 0) as i64
        })
        .to_string();
    }
    if t.len() == 1 && t.chars().all(|c| c.is_ascii_uppercase()) {
        let letters = ['A', 'B', 'C', 'D'];
        let others: Vec<char> = letters
            .iter()
            .copied()
            .filter(|c| c.to_string() != t)
            .collect();
        return others[(r as usize) % others.len().max(1)].to_string();
    }
    format!("{t}+{}", 1 + r % 9)
}

impl SimProvider {
    fn respond(&self, req: &CallRequest, truth: &str) -> (String, String) {
        let seed_src = serde_json::to_vec(&(&req.model, &req.prompt, &req.params, req.sample))
            .unwrap_or_default();
        let seed = u64::from_le_bytes(
            blake3::hash(&seed_src).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let prompt = req.prompt.full_text();
        let filler = |rng: &mut ChaCha8Rng, n: usize| -> String {
            (0..n)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let partial = match &req.prompt {
            Prompt::Chat(msgs) => msgs
                .last()
                .filter(|m| m.role == "assistant")
                .map(|m| m.content.as_str()),
            Prompt::Completion(t) => Some(t.as_str()),
        };
        if let Some(text) = partial
            && !text.trim_end().ends_with("</think>")
            && text.contains("<think>")
        {
            // continuing a cut trace (e.g. after "Wait"): a second thought, then an answer
            let earlier = attempt_labels(text) + text.matches("Wait").count();
            let answer = self.pick(&mut rng, truth, earlier);
            let body = filler(&mut rng, self.settings.trace_words / 2);
            return (
                format!(", let me {body}.\n</think>\n\nThe answer is \\boxed{{{answer}}}."),
                "stop".into(),
            );
        }
        if is_summary_request(&prompt) {
            let said = last_boxed(&prompt)
                .or_else(|| {
                    ANSWER_SHOULD_BE
                        .captures_iter(&prompt)
                        .last()
                        .map(|c| c[1].to_string())
                })
                .unwrap_or_else(|| "unknown".into());
            let trace = think_block(&prompt).unwrap_or(&prompt);
            let words: Vec<&str> = trace.split_whitespace().collect();
            let gist = words[words.len().saturating_sub(40)..]
                .iter()
                .take(12)
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            return (
                format!(
                    "Summary (simulated): the attempt tried to {gist} … and concluded the answer was {said}. It checked its steps once."
                ),
                "stop".into(),
            );
        }
        let earlier = attempt_labels(&prompt);
        let answer = self.pick(&mut rng, truth, earlier);
        let body = filler(&mut rng, self.settings.trace_words);
        let text = format!(
            "<think>\n[simulated reasoning, {earlier} earlier attempt(s) seen] Let me {body}. So the answer should be {answer}.\n</think>\n\nThe final answer is \\boxed{{{answer}}}."
        );
        (text, "stop".into())
    }

    fn pick(&self, rng: &mut ChaCha8Rng, truth: &str, earlier: usize) -> String {
        let p = (self.settings.base_accuracy + self.settings.gain_per_summary * earlier as f64)
            .min(0.95);
        let u: f64 = rng.random();
        if u < p {
            truth.trim().to_string()
        } else {
            wrong_answer(truth, rng.random())
        }
    }
}

/// A request to summarize (the prompt says "summarize"), rather than to solve.
fn is_summary_request(prompt: &str) -> bool {
    SUMMARIZE.is_match(prompt)
}

static SUMMARIZE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bsummariz(e|ing)\b").expect("static regex"));
static ATTEMPT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\battempt\s+#?(\d+)").expect("static regex"));
static ANSWER_SHOULD_BE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"answer should be ([^\s.]+)").expect("static regex"));

/// Number of distinct "Attempt N" labels in a prompt (how the simulation counts summaries).
fn attempt_labels(prompt: &str) -> usize {
    let mut seen: Vec<&str> = ATTEMPT
        .captures_iter(prompt)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str())
        .collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

fn think_block(s: &str) -> Option<&str> {
    let a = s.find("<think>")? + "<think>".len();
    let b = s[a..].find("</think>").map(|i| a + i).unwrap_or(s.len());
    Some(&s[a..b])
}

fn last_boxed(s: &str) -> Option<String> {
    let i = s.rfind("\\boxed{")? + "\\boxed{".len();
    let j = s[i..].find('}')?;
    Some(s[i..i + j].to_string())
}

#[async_trait]
impl Provider for SimProvider {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn cache_identity(&self) -> serde_json::Value {
        let s = &self.settings;
        serde_json::json!({"base_accuracy": s.base_accuracy, "gain_per_summary": s.gain_per_summary, "trace_words": s.trace_words, "fail_rate": s.fail_rate})
    }

    async fn call(
        &self,
        req: &CallRequest,
        ctx: &CallContext<'_>,
    ) -> Result<CallResponse, CallError> {
        let start = std::time::Instant::now();
        let truth = ctx.problem.get("answer").map(|s| s.as_str()).unwrap_or("0");
        let (mut text, mut finish) = self.respond(req, truth);
        let max_tokens = req.params.get("max_tokens").and_then(|v| v.as_u64());
        if let Some(max) = max_tokens
            && approx_tokens(&text) > max
        {
            let cut = (max as usize * 4).min(text.len());
            let cut = (0..=cut)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            finish = "length".into();
        }
        let usage = Usage {
            prompt_tokens: approx_tokens(&req.prompt.full_text()),
            completion_tokens: approx_tokens(&text),
            reasoning_tokens: think_block(&text).map(approx_tokens).unwrap_or(0),
            cached_tokens: 0,
            estimated: false,
        };
        let s = &self.settings;
        let mut delay = s.latency_ms;
        if s.jitter_ms > 0.0 {
            delay += rand::rng().random_range(-s.jitter_ms..=s.jitter_ms);
        }
        if let Some(tps) = s.tokens_per_second
            && tps > 0.0
        {
            delay += usage.completion_tokens as f64 / tps * 1000.0;
        }
        if delay > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
        }
        if s.fail_rate > 0.0 {
            let h = blake3::hash(format!("{}{}", req.sample, req.prompt.full_text()).as_bytes());
            if (h.as_bytes()[0] as f64) / 256.0 < s.fail_rate {
                return Err(CallError::fatal("simulated failure (sim.fail_rate)"));
            }
        }
        ctx.observer.delta(&text);
        Ok(CallResponse {
            text,
            reasoning: None,
            finish_reason: finish,
            usage: Some(usage),
            latency_ms: start.elapsed().as_millis() as u64,
            model_id: Some(format!("sim:{}", req.model)),
            batch: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, NoObserver};
    use std::collections::BTreeMap;

    fn req(prompt: &str, sample: u32) -> CallRequest {
        CallRequest {
            model: "sim".into(),
            prompt: Prompt::Chat(vec![Message {
                role: "user".into(),
                content: prompt.into(),
            }]),
            params: BTreeMap::new(),
            sample,
        }
    }

    #[tokio::test]
    async fn deterministic_and_uses_truth() {
        let p = SimProvider::new(SimSettings {
            base_accuracy: 1.0,
            ..Default::default()
        });
        let problem: BTreeMap<String, String> = [("answer".to_string(), "42".to_string())].into();
        let ctx = CallContext {
            problem: &problem,
            observer: &NoObserver,
        };
        let a = p.call(&req("What is 6*7?", 0), &ctx).await.unwrap();
        let b = p.call(&req("What is 6*7?", 0), &ctx).await.unwrap();
        assert_eq!(
            a,
            CallResponse {
                latency_ms: a.latency_ms,
                ..b.clone()
            }
        );
        assert!(a.text.contains("\\boxed{42}") && a.text.contains("<think>"));
        let s = p
            .call(&req(&format!("Summarize: {}", a.text), 0), &ctx)
            .await
            .unwrap();
        assert!(s.text.contains("Summary (simulated)") && s.text.contains("42"));
    }

    #[test]
    fn accuracy_grows_with_attempt_labels() {
        let p = SimProvider::new(SimSettings::default());
        let right = |prompt: &str| {
            (0..400)
                .filter(|&s| p.respond(&req(prompt, s), "7").0.contains("\\boxed{7}"))
                .count()
        };
        let r0 = right("Q");
        let r3 = right("Q Attempt 0: x Attempt 1: y Attempt 2: z");
        assert!(r3 > r0 + 60, "{r0} vs {r3}");
    }
}
