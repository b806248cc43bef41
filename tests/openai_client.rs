//! The OpenAI-compatible client over real HTTP against the in-process fake server.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distill::llm::openai::OpenAiProvider;
use distill::llm::{
    CallContext, CallError, CallObserver, CallRequest, CallResponse, Message, Prompt, Provider,
    chat_format,
};
use distill::spec::model::ModelSpec;
use serde_json::{Value, json};
use support::fake_openai::{
    FakeConfig, FakeServer, Fault, Reply, echo_reply, load_traces, shared_dir, trace_responder,
};

#[derive(Default)]
struct Rec {
    deltas: Mutex<String>,
    retries: Mutex<Vec<(u32, String)>>,
}
impl CallObserver for Rec {
    fn delta(&self, t: &str) {
        self.deltas.lock().unwrap().push_str(t);
    }
    fn retry(&self, attempt: u32, reason: &str) {
        self.retries
            .lock()
            .unwrap()
            .push((attempt, reason.to_string()));
    }
}

fn spec(server: &FakeServer, extra: Value) -> ModelSpec {
    let mut v = json!({
        "provider": "openai-compatible",
        "model": "fake-r1",
        "base_url": server.base_url(),
        "max_retries": 10,
        "timeout_s": 5.0,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn provider(spec: &ModelSpec) -> OpenAiProvider {
    OpenAiProvider::new(spec)
        .unwrap()
        .with_retry_timing(Duration::from_millis(5), Duration::from_millis(40))
}

fn user(q: &str) -> Prompt {
    Prompt::Chat(vec![Message {
        role: "user".into(),
        content: q.into(),
    }])
}

async fn call_with(
    p: &OpenAiProvider,
    spec: &ModelSpec,
    prompt: Prompt,
    obs: &Rec,
) -> Result<CallResponse, CallError> {
    let problem = BTreeMap::new();
    let req = CallRequest {
        model: spec.model.clone(),
        prompt,
        params: spec.param_map(),
        sample: 0,
    };
    p.call(
        &req,
        &CallContext {
            problem: &problem,
            observer: obs,
        },
    )
    .await
}

async fn call(p: &OpenAiProvider, spec: &ModelSpec, q: &str) -> Result<CallResponse, CallError> {
    call_with(p, spec, user(q), &Rec::default()).await
}

#[tokio::test]
async fn chat_streaming_and_non_streaming() {
    let server = FakeServer::start(FakeConfig {
        cached_tokens: 3,
        ..Default::default()
    })
    .await;
    for stream in [true, false] {
        let s = spec(
            &server,
            json!({"stream": stream, "params": {"max_tokens": 100}}),
        );
        let p = provider(&s);
        let obs = Rec::default();
        let r = call_with(&p, &s, user("What is 2+3?"), &obs).await.unwrap();
        assert_eq!(r.text, echo_reply("What is 2+3?").content);
        assert_eq!(r.finish_reason, "stop");
        assert_eq!(r.model_id.as_deref(), Some("fake-r1"));
        assert_eq!(r.reasoning, None);
        assert_eq!(r.usage.unwrap().prompt_tokens, 3);
        assert_eq!(
            r.usage.unwrap().completion_tokens,
            (r.text.chars().count() as u64).div_ceil(4)
        );
        assert_eq!(r.usage.unwrap().cached_tokens, 3);
        assert_eq!(*obs.deltas.lock().unwrap(), r.text);
        let body = server.requests().pop().unwrap().body;
        assert_eq!(body["stream"], json!(stream));
        assert_eq!(body.get("stream_options").is_some(), stream);
        assert_eq!(body["messages"][0]["content"], "What is 2+3?");
    }
}

#[tokio::test]
async fn reasoning_content_is_split_out() {
    let server = FakeServer::start(FakeConfig {
        reasoning_field: true,
        ..Default::default()
    })
    .await;
    for stream in [true, false] {
        let s = spec(&server, json!({"stream": stream}));
        let r = call(&provider(&s), &s, "Q?").await.unwrap();
        let reasoning = r.reasoning.expect("reasoning");
        assert!(
            reasoning.starts_with("The prompt has 2 characters"),
            "{reasoning}"
        );
        assert!(r.text.starts_with("The answer is \\boxed{"), "{}", r.text);
        assert_eq!(
            r.usage.unwrap().reasoning_tokens,
            (reasoning.chars().count() as u64).div_ceil(4)
        );
        assert!(r.usage.unwrap().completion_tokens > r.usage.unwrap().reasoning_tokens);
    }
}

#[tokio::test]
async fn completions_render_the_chat_format_or_send_text_as_is() {
    let server = FakeServer::start(FakeConfig::default()).await;
    let s = spec(
        &server,
        json!({"endpoint": "completions", "chat_format": "deepseek_r1"}),
    );
    let p = provider(&s);
    let r = call(&p, &s, "Find x.").await.unwrap();
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.path, "/v1/completions");
    let rendered = "<｜begin▁of▁sentence｜><｜User｜>Find x.<｜Assistant｜><think>\n";
    assert_eq!(rec.body["prompt"], rendered);
    assert!(rec.body.get("messages").is_none());
    assert_eq!(
        p.cache_identity(),
        json!({"endpoint": "completions", "chat_format": "deepseek_r1"})
    );
    assert_eq!(r.text, echo_reply(rendered).content);
    // A continuation: prompt plus text so far, sent unchanged.
    let cont = format!("{rendered}Let me see");
    let r = call_with(&p, &s, Prompt::Completion(cont.clone()), &Rec::default())
        .await
        .unwrap();
    assert_eq!(server.requests().pop().unwrap().body["prompt"], json!(cont));
    assert_eq!(r.text, echo_reply(&cont).content);
}

#[tokio::test]
async fn request_body_carries_exactly_the_configured_params() {
    let server = FakeServer::start(FakeConfig::default()).await;
    let s = spec(
        &server,
        json!({
            "params": {"max_tokens": 512, "temperature": 0.6, "top_k": 20, "seed": 7},
            "extra": {"repetition_penalty": 1.05, "min_p": 0.0, "chat_template_kwargs": {"a": 1}},
        }),
    );
    call(&provider(&s), &s, "q").await.unwrap();
    let body = server.requests().pop().unwrap().body;
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "chat_template_kwargs",
            "max_tokens",
            "messages",
            "min_p",
            "model",
            "repetition_penalty",
            "seed",
            "stream",
            "stream_options",
            "temperature",
            "top_k"
        ]
    );
    assert_eq!(body["top_k"], json!(20));
    assert_eq!(body["seed"], json!(7));
    assert_eq!(body["temperature"], json!(0.6));
    assert_eq!(body["min_p"], json!(0.0));
    assert_eq!(body["chat_template_kwargs"], json!({"a": 1}));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["model"], "fake-r1");

    let s = spec(
        &server,
        json!({"params": {"stop": ["</answer>"]}, "stream": false}),
    );
    call(&provider(&s), &s, "q").await.unwrap();
    let body = server.requests().pop().unwrap().body;
    assert_eq!(body["stop"], json!(["</answer>"]));
    assert!(body.get("top_k").is_none() && body.get("stream_options").is_none());
}

#[tokio::test]
async fn every_fault_kind_at_30_percent_is_retried_to_success() {
    let kinds = [
        (
            Fault::RateLimit {
                retry_after_s: None,
                retry_after_ms: Some(5),
            },
            true,
        ),
        (Fault::ServerError, true),
        (Fault::Unavailable, true),
        (Fault::Overloaded, true),
        (Fault::DropMidStream, true),
        (Fault::DropMidStream, false),
        (Fault::InvalidJson, true),
        (Fault::InvalidJson, false),
        (Fault::Slow(Duration::from_millis(2500)), true),
    ];
    let runs = kinds.into_iter().map(|(fault, stream)| async move {
        let server =
            FakeServer::start(FakeConfig::default().with_faults(0.3, vec![fault.clone()])).await;
        let s = spec(
            &server,
            json!({"stream": stream, "timeout_s": 1.0, "max_retries": 12}),
        );
        let p = provider(&s);
        let calls = (0..16).map(|i| {
            let (p, s, fault) = (&p, &s, &fault);
            async move {
                let q = format!("question {i}");
                let r = call(p, s, &q)
                    .await
                    .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
                assert_eq!(r.text, echo_reply(&q).content, "{fault:?}");
                assert_eq!(r.finish_reason, "stop");
            }
        });
        futures_util::future::join_all(calls).await;
        assert!(server.faults_injected() > 0, "{fault:?} never injected");
        // a loaded machine may time out an unfaulted request too: never fewer than this
        assert!(server.request_count() >= 16 + server.faults_injected());
    });
    futures_util::future::join_all(runs).await;
}

#[tokio::test]
async fn fatal_errors_are_not_retried_and_keep_the_server_message() {
    let cases = [
        (Fault::BadRequest, "maximum context length"),
        (Fault::Unauthorized, "Invalid authentication credentials"),
        (Fault::QuotaExhausted, "exceeded your current quota"),
    ];
    for (fault, msg) in cases {
        let server =
            FakeServer::start(FakeConfig::default().with_script(vec![fault.clone()])).await;
        let s = spec(&server, json!({}));
        let obs = Rec::default();
        let e = call_with(&provider(&s), &s, user("q"), &obs)
            .await
            .unwrap_err();
        assert!(!e.retryable, "{fault:?}");
        assert!(e.message.contains(msg), "{fault:?}: {}", e.message);
        assert_eq!(server.request_count(), 1, "{fault:?}");
        assert!(obs.retries.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn retry_after_is_a_minimum_delay() {
    for (fault, min) in [
        (
            Fault::RateLimit {
                retry_after_s: Some(1),
                retry_after_ms: None,
            },
            1.0,
        ),
        (
            Fault::RateLimit {
                retry_after_s: None,
                retry_after_ms: Some(300),
            },
            0.3,
        ),
    ] {
        let server = FakeServer::start(FakeConfig::default().with_script(vec![fault])).await;
        let s = spec(&server, json!({}));
        let obs = Rec::default();
        let t = Instant::now();
        let r = call_with(&provider(&s), &s, user("q"), &obs).await.unwrap();
        let el = t.elapsed().as_secs_f64();
        assert!(
            el >= min && el < min + 1.0,
            "elapsed {el} for minimum {min}"
        );
        assert_eq!(r.text, echo_reply("q").content);
        let retries = obs.retries.lock().unwrap();
        assert_eq!(retries.len(), 1);
        assert_eq!(retries[0].0, 1);
        assert!(retries[0].1.contains("429"), "{}", retries[0].1);
    }
}

#[tokio::test]
async fn retries_run_out_with_a_retryable_error() {
    let server = FakeServer::start(FakeConfig::default().with_script(vec![
        Fault::Slow(Duration::from_secs(2)),
        Fault::DropMidStream,
    ]))
    .await;
    let s = spec(&server, json!({"timeout_s": 0.3, "max_retries": 0}));
    let p = provider(&s);
    let e = call(&p, &s, "q").await.unwrap_err();
    assert!(
        e.retryable && e.message.contains("timed out"),
        "{}",
        e.message
    );
    let e = call(&p, &s, "q").await.unwrap_err();
    assert!(e.retryable, "{}", e.message);
    assert!(
        e.message.contains("broken off") || e.message.contains("truncated"),
        "{}",
        e.message
    );
    let s = spec(&server, json!({"max_retries": 1}));
    let server2 =
        FakeServer::start(FakeConfig::default().with_faults(1.0, vec![Fault::ServerError])).await;
    let s2 = spec(&server2, json!({"max_retries": 2}));
    let e = call(&provider(&s2), &s2, "q").await.unwrap_err();
    assert!(
        e.retryable && e.message.contains("after 2 retries"),
        "{}",
        e.message
    );
    assert_eq!(server2.request_count(), 3);
    drop(s);
}

#[tokio::test]
async fn rpm_limit_spreads_calls() {
    let server = FakeServer::start(FakeConfig::default()).await;
    let s = spec(&server, json!({"rpm": 600}));
    let p = provider(&s);
    let t = Instant::now();
    let calls = (0..10).map(|i| call(&p, &s, if i % 2 == 0 { "a" } else { "b" }));
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    let el = t.elapsed().as_secs_f64();
    assert!((0.85..3.0).contains(&el), "10 calls at 600 rpm took {el}s");
}

/// With no `rpm:` set, the server's rate is learned from its 429s: the calls after the first
/// refusals are paced below it, so refusals stay few (before pacing, 27-33% of requests to a
/// rate-limited server were refused), and every call succeeds.
#[tokio::test]
async fn a_servers_rate_limit_is_learned_and_kept() {
    let server = FakeServer::start(FakeConfig {
        rps_limit: Some(10),
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let s = spec(&server, json!({"max_retries": 30}));
    let p = OpenAiProvider::new(&s).unwrap();
    let calls = (0..50).map(|i| {
        let (p, s) = (&p, &s);
        async move { call(p, s, &format!("q{i}")).await.unwrap() }
    });
    futures_util::future::join_all(calls).await;
    let refused = server.rate_limited_count();
    assert!(refused > 0, "the server's limit was reached");
    assert!(
        refused <= 10,
        "{refused} of {} requests refused",
        server.request_count()
    );
    let rate = p.paced_rate().expect("a learned rate");
    assert!((3.0..=10.5).contains(&rate), "learned {rate}/s");
}

/// A server that sends OpenAI's `x-ratelimit-*-requests` headers is paced below the limit
/// it announces from its first answer, and an exhausted window pauses new requests until it
/// frees: no request is refused.
#[tokio::test]
async fn a_servers_ratelimit_headers_avoid_its_429s() {
    let server = FakeServer::start(FakeConfig {
        rps_limit: Some(10),
        rate_headers: true,
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let s = spec(&server, json!({"max_retries": 30}));
    let p = OpenAiProvider::new(&s).unwrap();
    let t = Instant::now();
    let calls = (0..30).map(|i| {
        let (p, s) = (&p, &s);
        async move { call(p, s, &format!("q{i}")).await.unwrap() }
    });
    futures_util::future::join_all(calls).await;
    let el = t.elapsed().as_secs_f64();
    assert_eq!(
        server.rate_limited_count(),
        0,
        "{} requests in {el:.2}s",
        server.request_count()
    );
    let rate = p.paced_rate().expect("paced from the header");
    assert!((9.0..10.0).contains(&rate), "paced at {rate}/s");
    // 10 in the first second, then 20 at just under 10/s
    assert!(
        (2.0..4.0).contains(&el),
        "30 calls at a 10/s limit took {el:.2}s"
    );
}

#[tokio::test]
async fn exhausted_ratelimit_headers_pause_new_requests() {
    let server = FakeServer::start(
        FakeConfig::default().with_script(vec![Fault::ExhaustedHeaders("400ms".into())]),
    )
    .await;
    let s = spec(&server, json!({}));
    let p = provider(&s);
    call(&p, &s, "a").await.unwrap();
    let t = Instant::now();
    call(&p, &s, "b").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn continuation_parts_come_back_with_finish_reason_length() {
    let full: String = (0..60).map(|i| format!("step {i}; ")).collect();
    let answer = full.clone();
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(3),
        ..FakeConfig::default().with_responder(move |_| Reply::text(answer.clone()))
    })
    .await;
    let s = spec(
        &server,
        json!({"endpoint": "completions", "chat_format": "chatml"}),
    );
    let p = provider(&s);
    let Prompt::Chat(msgs) = user("Go") else {
        unreachable!()
    };
    let mut prompt = chat_format::lookup("chatml").unwrap().render(&msgs);
    let mut text = String::new();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let r = call_with(
            &p,
            &s,
            Prompt::Completion(format!("{prompt}{text}")),
            &Rec::default(),
        )
        .await
        .unwrap();
        text.push_str(&r.text);
        reasons.push(r.finish_reason);
    }
    assert_eq!(reasons, ["length", "length", "stop"]);
    assert_eq!(text, full);
    prompt.clear();
}

#[tokio::test]
async fn replays_real_r1_traces() {
    let Some(shared) = shared_dir() else {
        println!("NOTICE: shared/ not found (set DISTILL_SHARED); skipping trace replay");
        return;
    };
    let path = shared.join("traces/aime_2024_deepseek_r1_completions.csv");
    if !path.exists() {
        println!("NOTICE: {} missing; skipping trace replay", path.display());
        return;
    }
    let traces = load_traces(&path).unwrap();
    assert!(traces.len() >= 3);
    let server = FakeServer::start(FakeConfig {
        responder: trace_responder(traces.clone()),
        chunk_chars: 64,
        ..Default::default()
    })
    .await;
    let s = spec(
        &server,
        json!({"endpoint": "completions", "chat_format": "deepseek_r1"}),
    );
    let p = provider(&s);
    for t in traces.iter().take(3) {
        let q = format!(
            "Solve the problem.\n\n{}\n\nPut the final answer in \\boxed{{}}.",
            t.question
        );
        let obs = Rec::default();
        let r = call_with(&p, &s, user(&q), &obs).await.unwrap();
        assert_eq!(r.text, t.completion, "trace {}", t.id);
        assert_eq!(*obs.deltas.lock().unwrap(), t.completion);
        assert!(r.usage.unwrap().completion_tokens > 100);
    }
}
