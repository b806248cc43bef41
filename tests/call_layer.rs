//! The model-call layer end to end: the real `distill` binary against the in-process fake
//! OpenAI-compatible server over real HTTP. Each test names the rule it pins:
//!
//! 1. a stream that ends without a finish_reason (bare `[DONE]`, EOF) is truncated: retried,
//!    never cached; when it keeps happening the failure names `finish_reason` and
//!    llama-cpp-python's `interrupt_requests`;
//! 2. a 200 with empty `choices` and 3. a 200 whose body is an error object: retried, never
//!    cached;
//! 4. missing usage is estimated, marked `estimated`, counted in metrics.json;
//! 5. continuation stays within `max_total_tokens` (the last step asks for what is left);
//! 6. a reply cut while thinking is continued from its reasoning (chat and completions);
//! 7. samples get distinct seeds, recorded in the outputs;
//! 8. identical calls are sent once (within a process and across processes on one cache);
//! 9. a full cache disk keeps every answer and reports what was not cached;
//! 10. `--verbose` logs requests and responses, never the key;
//! 11. an API key inside a completion is not stored verbatim;
//! 12. a llama-cpp-python-like server that interrupts streams: the in-flight limit adapts.
//!
//! Plus checks of the fake server's new shapes themselves, and a documented limitation
//! (a cut answer relabelled `stop` is indistinguishable from a complete one).
//!
//! The fake server runs in the test's tokio runtime; the binary is a child process run on a
//! blocking thread, so the server keeps answering while the test waits for it.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use support::fake_openai::{FakeConfig, FakeServer, Fault, Reply, split_reply_parts};
#[path = "support/call_helpers.rs"]
mod helpers;
use helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn fake_serves_the_new_fault_shapes() {
    let full = Reply::text(ANSWER);
    let half = full.cut().content;
    assert!(!half.is_empty() && half.len() < ANSWER.len() && ANSWER.starts_with(&half));
    for (fault, stream) in [
        Fault::BareDoneMidStream,
        Fault::EofMidStream,
        Fault::EmptyChoices,
        Fault::NoUsage,
        Fault::ErrorBody200,
        Fault::RelabelledStop,
    ]
    .into_iter()
    .flat_map(|f| [(f.clone(), true), (f, false)])
    {
        let server = FakeServer::start(always(fault.clone())).await;
        let (status, body) = raw_chat(&server, chat_body(stream)).await;
        let what = format!("{fault:?} stream={stream}: {body}");
        assert_eq!(status, 200, "{what}");
        if stream {
            let s = streamed(&body);
            match fault {
                Fault::BareDoneMidStream => {
                    assert!(s.done && s.finishes.is_empty() && !s.usage, "{what}");
                    assert_eq!(s.content, half, "{what}");
                }
                Fault::EofMidStream => {
                    assert!(!s.done && s.finishes.is_empty() && !s.usage, "{what}");
                    assert_eq!(s.content, half, "{what}");
                }
                Fault::EmptyChoices => {
                    assert!(s.done && s.finishes.is_empty() && s.usage, "{what}");
                    assert!(s.chunks.iter().all(|c| c["choices"] == json!([])), "{what}");
                }
                Fault::NoUsage => {
                    assert!(s.done && !s.usage && s.finishes == ["stop"], "{what}");
                    assert_eq!(s.content, ANSWER, "{what}");
                }
                Fault::ErrorBody200 => {
                    assert_eq!(s.chunks[0]["error"]["type"], "server_error", "{what}");
                    assert_eq!(s.chunks[0]["error"]["code"], 500, "{what}");
                }
                Fault::RelabelledStop => {
                    assert!(s.done && s.usage && s.finishes == ["stop"], "{what}");
                    assert_eq!(s.content, half, "{what}");
                }
                _ => unreachable!(),
            }
        } else {
            let v: Result<Value, _> = serde_json::from_str(&body);
            match fault {
                Fault::EofMidStream => assert!(v.is_err(), "{what}"),
                Fault::BareDoneMidStream => {
                    let v = v.unwrap();
                    assert_eq!(v["choices"][0]["finish_reason"], Value::Null, "{what}");
                    assert_eq!(v["choices"][0]["message"]["content"], half.as_str());
                }
                Fault::EmptyChoices => {
                    let v = v.unwrap();
                    assert_eq!(v["choices"], json!([]), "{what}");
                    assert_eq!(v["object"], "chat.completion", "{what}");
                    assert!(v["usage"].is_object(), "{what}");
                }
                Fault::NoUsage => {
                    let v = v.unwrap();
                    assert!(v.get("usage").is_none(), "{what}");
                    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
                }
                Fault::ErrorBody200 => {
                    let v = v.unwrap();
                    assert_eq!(v["error"]["type"], "server_error", "{what}");
                    assert!(v.get("choices").is_none(), "{what}");
                }
                Fault::RelabelledStop => {
                    let v = v.unwrap();
                    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{what}");
                    assert_eq!(v["choices"][0]["message"]["content"], half.as_str());
                }
                _ => unreachable!(),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_split_parts_can_cut_inside_reasoning_content() {
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        reasoning_field: true,
        ..fixed_owned(format!(
            "<think>\n{REASONING}\n</think>\n\n{AFTER_THINKING}"
        ))
    })
    .await;
    let parts = split_reply_parts(&Reply::reasoned(REASONING, AFTER_THINKING), 2);
    assert!(parts[0].1.is_empty(), "the first part is reasoning only");
    for stream in [true, false] {
        let (_, body) = raw_chat(&server, chat_body(stream)).await;
        let (reasoning, content, finish) = if stream {
            let s = streamed(&body);
            (s.reasoning, s.content, s.finishes.join(","))
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            let m = &v["choices"][0]["message"];
            (
                m["reasoning_content"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(reasoning, parts[0].0, "{body}");
        assert_eq!(content, "", "{body}");
        assert_eq!(finish, "length", "{body}");
        // a continuation carrying the reasoning so far gets the rest
        let mut b = chat_body(stream);
        b["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": format!("<think>\n{}", parts[0].0)}),
            json!({"role": "user", "content": "Continue exactly where you stopped."}),
        ]);
        let (_, body) = raw_chat(&server, b).await;
        if stream {
            let s = streamed(&body);
            assert_eq!(s.reasoning, parts[1].0, "{body}");
            assert_eq!(s.content, AFTER_THINKING, "{body}");
            assert_eq!(s.finishes, ["stop"], "{body}");
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], AFTER_THINKING);
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_interrupts_a_stream_when_another_request_waits() {
    let server = FakeServer::start(FakeConfig {
        interrupt_on_new_request: true,
        chunk_delay: Duration::from_millis(5),
        ..fixed(ANSWER)
    })
    .await;
    let _ = client(); // built before the clock matters
    let url = server.base_url();
    let first = tokio::spawn({
        let body = chat_body(true);
        let url = url.clone();
        async move {
            client()
                .post(format!("{url}/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    let t0 = Instant::now();
    while server.request_count() < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the first request never came"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, second) = raw_chat(&server, chat_body(true)).await;
    let first = streamed(&first.await.unwrap());
    assert!(first.done, "ended by a bare [DONE]");
    assert!(
        first.finishes.is_empty(),
        "no finish_reason: {:?} {:?}",
        first.finishes,
        first.content
    );
    assert!(
        first.content.len() < ANSWER.len() && ANSWER.starts_with(&first.content),
        "{:?}",
        first.content
    );
    let second = streamed(&second);
    assert_eq!(second.content, ANSWER, "the waiting request is then served");
    assert_eq!(second.finishes, ["stop"]);
    assert_eq!(server.interrupted_count(), 1);
    // a lone stream is not interrupted
    let (_, alone) = raw_chat(&server, chat_body(true)).await;
    assert_eq!(streamed(&alone).finishes, ["stop"]);
    assert_eq!(server.interrupted_count(), 1);
    // the recorded bodies carry what was sent
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.stream() && r.messages().len() == 1));
}

// ---------------------------------------------------------------------------------------
// 1. A stream without a finish_reason is truncated: retried, never cached
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule1_a_stream_ending_without_finish_reason_is_retried_never_cached() {
    for fault in [Fault::BareDoneMidStream, Fault::EofMidStream] {
        let what = format!("{fault:?}");
        let rs = retried_then_cached(&what, fault.clone(), "").await;
        assert!(
            rs.iter().any(|e| e.contains("finish_reason")),
            "{what}: the retry says why: {rs:?}"
        );
        let why = always_fails_uncached(&what, fault, "").await;
        assert!(why.contains("finish_reason"), "{what}: {why}");
        assert!(
            why.contains("interrupt_requests"),
            "{what}: names the llama-cpp-python fix: {why}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. HTTP 200 with empty `choices`: retried, never cached
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule2_empty_choices_are_retried_never_cached() {
    for (stream, more) in [(true, ""), (false, ", stream: false")] {
        let what = format!("EmptyChoices stream={stream}");
        retried_then_cached(&what, Fault::EmptyChoices, more).await;
        always_fails_uncached(&what, Fault::EmptyChoices, more).await;
    }
}

// ---------------------------------------------------------------------------------------
// 3. HTTP 200 whose body is an error object: retried, never cached
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule3_an_error_object_in_a_200_is_retried_never_cached() {
    for (stream, more) in [(true, ""), (false, ", stream: false")] {
        let what = format!("ErrorBody200 stream={stream}");
        retried_then_cached(&what, Fault::ErrorBody200, more).await;
        always_fails_uncached(&what, Fault::ErrorBody200, more).await;
    }
}

// ---------------------------------------------------------------------------------------
// 4. No usage in the answer: estimated, marked, counted
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule4_missing_usage_is_estimated_and_counted() {
    for (stream, more) in [(true, ""), (false, ", stream: false")] {
        let what = format!("stream={stream}");
        let p = Project::new();
        let server = FakeServer::start(always(Fault::NoUsage)).await;
        p.write("pipelines/u.yaml", &single("u", &model(&server, more), ""));
        assert_exit(
            &run_pipeline(&p, "pipelines/u.yaml", "cache", &ONE).await,
            0,
        );
        assert_eq!(
            server.request_count(),
            1,
            "{what}: no retry for missing usage"
        );
        let run = p.last_run("u");
        let r = results(&run);
        let out = &node(&r, 0, "attempt_0")["output"];
        assert_eq!(out["text"], ANSWER, "{what}");
        let u = &out["usage"];
        assert_eq!(u["estimated"], true, "{what}: {u}");
        assert!(u["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{what}: {u}");
        assert!(
            u["completion_tokens"].as_u64().unwrap_or(0) > 0,
            "{what}: {u}"
        );
        let m = metrics(&run);
        assert!(
            m["usage_estimated_calls"].as_u64().is_some_and(|n| n >= 1),
            "{what}: {m}"
        );

        // with usage reported, nothing is estimated
        let p = Project::new();
        let server = FakeServer::start(fixed(ANSWER)).await;
        p.write("pipelines/u.yaml", &single("u", &model(&server, more), ""));
        assert_exit(
            &run_pipeline(&p, "pipelines/u.yaml", "cache", &ONE).await,
            0,
        );
        let run = p.last_run("u");
        let u = &node(&results(&run), 0, "attempt_0")["output"]["usage"].clone();
        assert_ne!(u["estimated"], true, "{what}: {u}");
        let m = metrics(&run);
        assert!(
            m["usage_estimated_calls"].as_u64().unwrap_or(0) == 0,
            "{what}: {m}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Continuation stays within max_total_tokens
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule5_continuation_asks_only_for_the_tokens_left() {
    let p = Project::new();
    // always cut by length, with as many completion tokens as asked for (at most 20): the
    // fake counts 4 characters a token
    let server = FakeServer::start(FakeConfig::default().with_responder(|body: &Value| {
        let n = body["max_tokens"].as_u64().unwrap_or(20).min(20) as usize;
        Reply::text("abcd".repeat(n)).finish("length")
    }))
    .await;
    let more =
        ", params: {max_tokens: 20}, continuation: {max_continuations: 10, max_total_tokens: 50}";
    p.write("pipelines/b.yaml", &single("b", &model(&server, more), ""));
    let t = run_pipeline(&p, "pipelines/b.yaml", "cache", &ONE).await;
    let t = text(&t);
    let reqs = server.requests();
    let asked: Vec<Option<u64>> = reqs.iter().map(|r| r.max_tokens()).collect();
    assert_eq!(
        asked,
        vec![Some(20), Some(20), Some(10)],
        "max_tokens of the steps\n{t}"
    );
    assert_eq!(reqs.len(), 3, "{t}");
}

// ---------------------------------------------------------------------------------------
// 6. Cut while thinking: continued from the reasoning so far
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule6_cut_while_thinking_chat_continues_from_the_reasoning() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        reasoning_field: true,
        ..fixed_owned(format!(
            "<think>\n{REASONING}\n</think>\n\n{AFTER_THINKING}"
        ))
    })
    .await;
    let parts = split_reply_parts(&Reply::reasoned(REASONING, AFTER_THINKING), 2);
    assert!(parts[0].1.is_empty() && !parts[0].0.is_empty());
    let more = ", continuation: {max_continuations: 4}";
    p.write("pipelines/t.yaml", &single("t", &model(&server, more), ""));
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/t.yaml", "cache", &ONE).await,
        0,
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{t}");
    let msgs = reqs[1].messages();
    let last_assistant = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no assistant message in the continuation: {msgs:?}"));
    let content = last_assistant["content"].as_str().unwrap();
    assert!(content.starts_with("<think>"), "{content:?}");
    assert!(
        content.contains(parts[0].0.trim()),
        "the reasoning so far is in the continuation: {content:?}"
    );
    let r = results(&p.last_run("t"));
    let out = &node(&r, 0, "attempt_0")["output"];
    let reasoning = out["reasoning"].as_str().unwrap();
    assert!(reasoning.contains(parts[0].0.trim()), "{out}");
    assert!(reasoning.contains(parts[1].0.trim()), "{out}");
    assert_eq!(out["finish_reasons"], json!(["length", "stop"]), "{out}");
    assert_eq!(out["answer"], "42", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rule6_cut_while_thinking_completions_r1_continues_from_the_reasoning() {
    let p = Project::new();
    // an R1 distill on /completions writes its reasoning after the prompt's `<think>\n`
    let full = format!("{REASONING}\n</think>\n\n{AFTER_THINKING}");
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        ..fixed_owned(full.clone())
    })
    .await;
    let parts = split_reply_parts(&Reply::text(full), 2);
    assert!(
        REASONING.starts_with(&parts[0].1),
        "the first part is reasoning only"
    );
    let more =
        ", endpoint: completions, chat_format: deepseek_r1, continuation: {max_continuations: 4}";
    p.write("pipelines/t.yaml", &single("t", &model(&server, more), ""));
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/t.yaml", "cache", &ONE).await,
        0,
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{t}");
    let first = reqs[0].prompt().unwrap();
    assert!(first.ends_with("<｜Assistant｜><think>\n"), "{first:?}");
    let cont = reqs[1].prompt().unwrap();
    assert!(
        cont.ends_with(&parts[0].1),
        "the continuation prompt ends with the reasoning so far: {cont:?}"
    );
    let r = results(&p.last_run("t"));
    let out = &node(&r, 0, "attempt_0")["output"];
    let reasoning = out["reasoning"].as_str().unwrap();
    let rest = &REASONING[parts[0].1.len()..];
    assert!(reasoning.contains(parts[0].1.trim()), "{out}");
    assert!(reasoning.contains(rest.trim()), "{out}");
    assert_eq!(out["finish_reasons"], json!(["length", "stop"]), "{out}");
    assert_eq!(out["answer"], "42", "{out}");
}
