//! HTTP client benchmark against the in-process fake server (not run by tests):
//! 1. servers limited to 5 and 20 requests/s, about 30 s of calls each, with `rpm:` set to
//!    the limit client-side;
//! 2. the same servers with nothing configured (the rate is learned from their 429s);
//!    and the same again, the servers sending `x-ratelimit-*-requests` headers (as OpenAI does);
//! 3. M zero-latency calls at concurrency C: raw client throughput.
//!
//! `cargo run --example bench_http -- [--limited-calls N] [--fast-calls 5000] [--concurrency 64]`

#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use distill::llm::openai::OpenAiProvider;
use distill::llm::{CallContext, CallRequest, Message, NoObserver, Prompt, Provider};
use distill::spec::model::ModelSpec;
use fake_openai::{FakeConfig, FakeServer};
use futures_util::StreamExt;
use serde_json::json;

struct Outcome {
    ok: usize,
    failed: usize,
    secs: f64,
}

async fn run(p: &OpenAiProvider, calls: usize, concurrency: usize) -> Outcome {
    let problem = BTreeMap::new();
    let t = Instant::now();
    let results: Vec<bool> = futures_util::stream::iter(0..calls)
        .map(|i| {
            let problem = &problem;
            async move {
                let req = CallRequest {
                    model: "bench".into(),
                    prompt: Prompt::Chat(vec![Message {
                        role: "user".into(),
                        content: format!("Problem {i}: what is {i} + 1?"),
                    }]),
                    params: [("max_tokens".to_string(), json!(256))]
                        .into_iter()
                        .collect(),
                    sample: 0,
                };
                let ctx = CallContext {
                    problem,
                    observer: &NoObserver,
                };
                p.call(&req, &ctx).await.is_ok()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ok = results.iter().filter(|r| **r).count();
    Outcome {
        ok,
        failed: calls - ok,
        secs: t.elapsed().as_secs_f64(),
    }
}

fn spec(base_url: &str, extra: serde_json::Value) -> ModelSpec {
    let mut v = json!({"provider": "openai-compatible", "model": "bench", "base_url": base_url,
        "max_retries": 30, "timeout_s": 30.0});
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    serde_json::from_value(v).expect("spec")
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let limited = arg("--limited-calls", 0);
    let fast = arg("--fast-calls", 5000);
    let conc = arg("--concurrency", 64);

    for rps in [5u32, 20] {
        // about 30 s of the server's capacity; `--limited-calls` overrides
        let calls = if limited > 0 {
            limited
        } else {
            rps as usize * 30
        };
        for (label, extra, rate_headers) in [
            ("rpm configured", json!({"rpm": rps * 60}), false),
            ("nothing configured (learned)", json!({}), false),
            (
                "nothing configured, x-ratelimit headers sent",
                json!({}),
                true,
            ),
        ] {
            let server = FakeServer::start(FakeConfig {
                rps_limit: Some(rps),
                rate_headers,
                latency: Duration::from_millis(20),
                ..Default::default()
            })
            .await;
            let p = OpenAiProvider::new(&spec(&server.base_url(), extra))?;
            let o = run(&p, calls, conc).await;
            let reqs = server.request_count();
            let r429 = server.rate_limited_count();
            let goodput = o.ok as f64 / o.secs;
            println!(
                "server limit {rps}/s, {label}: {} ok / {} failed in {:.1}s -> {:.2} calls/s = goodput {:.3} of the limit; \
                 {reqs} requests, {r429} answered 429 ({:.1}%); learned rate {}",
                o.ok,
                o.failed,
                o.secs,
                goodput,
                goodput / f64::from(rps),
                100.0 * r429 as f64 / reqs.max(1) as f64,
                p.paced_rate()
                    .map_or("-".to_string(), |r| format!("{r:.2}/s"))
            );
            server.shutdown();
        }
    }

    for stream in [true, false] {
        let server = FakeServer::start(FakeConfig::default()).await;
        let p = OpenAiProvider::new(&spec(&server.base_url(), json!({"stream": stream})))?;
        let o = run(&p, fast, conc).await;
        println!(
            "zero latency, stream={stream}, concurrency {conc}: {} ok / {} failed in {:.2}s -> {:.0} calls/s",
            o.ok,
            o.failed,
            o.secs,
            o.ok as f64 / o.secs
        );
        server.shutdown();
    }
    Ok(())
}
