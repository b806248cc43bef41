//! `distill pipeline plan`: a dry run through the scheduler that reads the cache only and
//! counts, per model node, the calls already cached and those still to make, and per model
//! the calls, tokens and cost to spend; `--explain` says why each of those misses the cache
//! (`explain`). With a remote cache, a local miss is looked up there (read, verified,
//! not kept: a plan writes nothing), so a round whose prompt depends on an earlier round's
//! answer is planned from that answer.

use std::sync::Arc;

use crate::exec::{self, Mode, RunCtx, RunOptions};
use crate::spec::Pipeline;

/// The plan.
pub async fn run(p: Pipeline, opts: &RunOptions) -> anyhow::Result<()> {
    run_with(p, opts, false).await
}

/// The plan; with `explain`, also why each call to make misses the cache.
pub async fn run_with(p: Pipeline, opts: &RunOptions, explain: bool) -> anyhow::Result<()> {
    let ctx = Arc::new(RunCtx::new(p, opts, Mode::Plan)?);
    let mut sink = exec::output::PlanSink {
        model_nodes: ctx
            .pipeline
            .nodes
            .iter()
            .filter(|n| crate::nodes::calls_model(n))
            .map(|n| n.id.clone())
            .collect(),
        ..Default::default()
    };
    let progress = exec::progress::Progress::hidden();
    exec::scheduler::schedule(ctx.clone(), &mut sink, &progress).await?;
    let p = &ctx.pipeline;
    let samples = p.spec.samples.max(1) as u64;
    let n = p.problems.len() as u64;
    let model_nodes: Vec<_> = p
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| crate::graph::uses_model(p, *i))
        .map(|(_, n)| n)
        .collect();
    println!(
        "plan for {} ({} problem(s) × {} sample(s))",
        p.spec.name, n, samples
    );
    println!(
        "  nodes per problem and sample: {} ({} with model calls)",
        p.nodes.len(),
        model_nodes.len()
    );
    println!(
        "  model-call nodes in all: {}",
        model_nodes.len() as u64 * n * samples
    );
    let cached: u64 = sink.cached.values().sum();
    let to_make: u64 = sink.to_make.values().sum();
    println!("  in the cache: {cached}");
    let judged = judge_calls(p, &sink).filter(|j| j.1 > 0);
    match judged {
        Some((j, n)) => println!(
            "  to make: {to_make} (continuations and conditional skips may change this), and at most {n} call(s) of the judge `{j}`"
        ),
        None => {
            println!("  to make: {to_make} (continuations and conditional skips may change this)")
        }
    }
    if !sink.not_run.is_empty() {
        let n: u64 = sink.not_run.values().sum();
        let why: Vec<String> = sink
            .not_run
            .iter()
            .map(|(r, k)| format!("{r}: {k}"))
            .collect();
        println!("  will not run: {n} ({})", why.join(", "));
    }
    let st = &ctx.calls.stats;
    let first_calls = st.planned_calls.load(std::sync::atomic::Ordering::Relaxed);
    let est_first = st.planned_tokens.load(std::sync::atomic::Ordering::Relaxed);
    let per_call = est_first.checked_div(first_calls).unwrap_or(0);
    let est = est_first + (to_make.saturating_sub(first_calls)) * per_call.max(1000);
    println!("  estimated tokens to spend: ~{est} (prompt ≈ chars/4, completion ≈ max_tokens)");
    let cost = st
        .planned_cost_micro
        .load(std::sync::atomic::Ordering::Relaxed) as f64
        / 1e6;
    let scale = if est_first > 0 {
        est as f64 / est_first as f64
    } else {
        1.0
    };
    println!(
        "  estimated cost: ~${:.2} (from the models' price: settings{})",
        cost * scale,
        if judged.is_some() {
            "; the judge's calls are counted per model below"
        } else {
            ""
        }
    );
    print_batches(&ctx);
    for node in &model_nodes {
        println!(
            "    {:<14} cached {:>6}  to make {:>6}",
            node.id,
            sink.cached.get(&node.id).unwrap_or(&0),
            sink.to_make.get(&node.id).unwrap_or(&0)
        );
    }
    print!("{}", per_model(&ctx, &sink));
    if let Some(r) = &ctx.remote {
        let r = r.report();
        println!(
            "  remote cache {}: {} of the entries read came from it ({} looked up, {} not there); a plan keeps none, a run keeps them locally",
            r.url, r.hits, r.lookups, r.misses
        );
        if r.read_errors + r.rejected > 0 {
            println!(
                "  warning: {} remote read(s) failed and {} remote entr(y/ies) were corrupt: counted as calls to make ({})",
                r.read_errors,
                r.rejected,
                r.last_error.as_deref().unwrap_or("")
            );
        }
    }
    if explain {
        let misses = ctx
            .calls
            .planned
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        print!(
            "{}",
            super::explain::explain(&ctx.pipeline, &misses, &opts.results_root)
        );
        let later = to_make.saturating_sub(misses.len() as u64);
        if later > 0 {
            println!(
                "  ({later} other call(s) to make wait on these answers: their prompts are known only once these run)"
            );
        }
    }
    Ok(())
}

/// Per model: calls to make, estimated tokens and cost. The calls whose prompt is known
/// (their upstream answers are cached) are estimated from it (prompt ≈ characters / 4,
/// completion ≈ `max_tokens`); the calls that wait on them at that model's average.
fn per_model(ctx: &RunCtx, sink: &exec::output::PlanSink) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let p = &ctx.pipeline;
    let model_of: BTreeMap<&str, &str> = p
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.as_str(), n.model.as_deref()?)))
        .collect();
    // a call's completion is estimated at its model's max_tokens (1000 when unset)
    let max_tokens = |m: &str| {
        p.spec
            .models
            .get(m)
            .and_then(|s| s.params.max_tokens)
            .unwrap_or(1000)
    };
    // model -> (calls to make, known calls, known prompt tokens, known completion tokens)
    let mut by: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    for (node, n) in &sink.to_make {
        if let Some(m) = model_of.get(node.as_str()) {
            by.entry(m).or_default().0 += n;
        }
    }
    let judge = judge_calls(p, sink);
    if let Some((j, n)) = judge {
        by.entry(j).or_default().0 += n;
    }
    let misses = ctx
        .calls
        .planned
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    for miss in &misses {
        let Some(m) = model_of.get(miss.node_id.as_str()) else {
            continue;
        };
        let max = max_tokens(m);
        let e = by.entry(m).or_default();
        e.1 += 1;
        e.2 += crate::llm::sim::approx_tokens(&miss.prompt);
        e.3 += max;
    }
    let mut out = String::from("  per model (calls to make, estimated tokens and cost):\n");
    for (m, (calls, known, pt, ct)) in &by {
        let later = calls.saturating_sub(*known);
        let max = max_tokens(m);
        let (pt_each, ct_each) = match known {
            0 => (1000, max),
            k => (pt / k, ct / k),
        };
        let usage = crate::llm::Usage {
            prompt_tokens: pt + later * pt_each,
            completion_tokens: ct + later * ct_each,
            ..Default::default()
        };
        // a batch model's calls at the batch price, as the estimate above
        let cost = p
            .spec
            .models
            .get(*m)
            .map_or(0.0, |s| match ctx.calls.is_batched(m) {
                true => s.price.batch_cost(&usage),
                false => s.price.cost(&usage),
            });
        let _ = writeln!(
            out,
            "    {m:<14} to make {calls:>6}  tokens ~{:>10}  cost ~${cost:.2}",
            usage.prompt_tokens + usage.completion_tokens
        );
    }
    if by.is_empty() {
        out.push_str("    (none: every call is cached)\n");
    }
    if let Some((j, n)) = judge.filter(|j| j.1 > 0) {
        let _ = writeln!(
            out,
            "    ({j}: {n} of these judge the grade: block's answers, at most one per graded call to make)"
        );
    }
    out
}

/// The `grade:` block's judge model and its calls to make: at most one per block-graded
/// node to make (a node whose own call is cached and whose judgement is not counts as one
/// to make already).
fn judge_calls<'a>(p: &'a Pipeline, sink: &exec::output::PlanSink) -> Option<(&'a str, u64)> {
    let g = p.spec.grade.as_ref()?;
    if g.compare != crate::grade::Compare::LlmJudge {
        return None;
    }
    let j = g.judge_model.as_deref()?;
    let n = p
        .nodes
        .iter()
        .filter(|n| {
            crate::nodes::graded_answer_field(&n.kind).is_some()
                && crate::nodes::node_graded(n, &p.spec)
        })
        .filter_map(|n| sink.to_make.get(&n.id))
        .sum();
    Some((j, n))
}

/// Waves and batches of a run with batch models (`batch: true` or `--batch`), per model
/// (the `grade:` block's judge included: batched when its model is, direct when not).
fn print_batches(ctx: &RunCtx) {
    let batch = ctx.calls.batch_models();
    if batch.is_empty() {
        return;
    }
    let w = exec::waves::plan(&ctx.pipeline, &batch);
    let names: Vec<&str> = batch.iter().map(|(m, _)| m.as_str()).collect();
    let why: Vec<&str> = [
        (w.conditional, "a `when:` can skip calls"),
        (
            w.judge.is_some(),
            "the judge is asked only about an extracted answer",
        ),
    ]
    .into_iter()
    .filter_map(|(on, why)| on.then_some(why))
    .collect();
    let bound = match why.is_empty() {
        true => String::new(),
        false => format!(" (upper bounds: {})", why.join("; ")),
    };
    println!(
        "  batch models: {} (cost above at the batch price); if every call misses the cache: at most {} wave(s) of model calls and {} batch(es){bound}",
        names.join(", "),
        w.waves,
        w.batches
    );
    if w.max_waves > w.waves {
        println!(
            "  with every answer cut at max_tokens and continued max_continuations times: at most {} wave(s), {} batch(es)",
            w.max_waves, w.max_batches
        );
    }
    for (m, c) in &w.per_model {
        let judge = match c.judge_calls {
            0 => String::new(),
            j => format!(", {j} of them judging the grade: block's answers"),
        };
        if c.batched {
            println!(
                "    {m:<14} batched: at most {} call(s) in {} batch(es){judge}",
                c.calls, c.batches
            );
        } else {
            println!(
                "    {m:<14} direct (not batched): at most {} call(s){judge}",
                c.calls
            );
        }
    }
    for ((wave, model), calls) in &w.calls {
        let how = if w.per_model.get(model).is_some_and(|c| c.batched) {
            "batched"
        } else {
            "direct"
        };
        println!(
            "    wave {:<3} {model:<14} {calls:>6} call(s) {how}",
            wave + 1
        );
    }
}
