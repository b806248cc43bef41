//! What a sent call's answer becomes before anyone uses it (direct or from a batch): keys
//! redacted, usage counted with the model's tokenizer when the server reported none,
//! refused unless complete, then stored as its call entry (the first stored answer wins).

use std::sync::atomic::Ordering;

use anyhow::{Result, anyhow};

use super::generate::Step;
use super::{Calls, Model, complete};
use crate::cache::Key;
use crate::llm::{CallRequest, CallResponse, Usage};

impl Calls {
    /// A sent call's answer (direct or from a batch): keys redacted, usage estimated when
    /// the server reported none, refused unless complete, then stored (the first stored
    /// answer wins).
    pub(super) fn keep(
        &self,
        model: &Model,
        key: &Key,
        req: &CallRequest,
        mut resp: CallResponse,
    ) -> Result<Step> {
        self.redactor.redact_in_place(&mut resp.text);
        if let Some(r) = resp.reasoning.as_mut() {
            self.redactor.redact_in_place(r);
        }
        if resp.usage.is_none() {
            resp.usage = Some(self.estimate(model, req, &resp));
            self.stats.usage_estimated.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(why) = complete::response(&resp) {
            // providers refuse these already; a backend that does not is not trusted either
            return Err(anyhow!(
                "model `{}` answered without a complete answer ({why}); not used, not cached",
                req.model
            ));
        }
        // the first stored answer wins: a process that answered the same call first (one
        // whose lock could not be taken) keeps its entry, and this node uses it too
        match self
            .cache
            .put_first(key, "call", resp.clone(), |r: &CallResponse| {
                complete::response(r).is_ok()
            }) {
            Ok(stored) => Ok(Step {
                resp: stored,
                sent: true,
            }),
            Err(e) => {
                self.cache_write_failed(&e.context("writing a call entry to the cache"));
                Ok(Step { resp, sent: true })
            }
        }
    }

    /// Usage counted with the model's tokenizer when the server reported none.
    fn estimate(&self, model: &Model, req: &CallRequest, resp: &CallResponse) -> Usage {
        let t = &model.tokenizer;
        let reasoning = resp.reasoning.as_deref().unwrap_or("");
        let reasoning_tokens = if reasoning.is_empty() {
            0
        } else {
            t.count(reasoning)
        };
        Usage {
            prompt_tokens: t.count(&req.prompt.full_text()),
            completion_tokens: t.count(&resp.text) + reasoning_tokens,
            reasoning_tokens,
            cached_tokens: 0,
            estimated: true,
        }
    }
}
