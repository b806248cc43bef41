//! API keys: lookup in the environment and `.env`, errors naming the variable, and the key
//! never showing in errors or Debug output. One test function, because it changes the
//! process environment and working directory (nothing else runs in this test binary).

mod support;

use std::collections::BTreeMap;

use distill::llm::openai::{OpenAiProvider, check_api_key};
use distill::llm::{CallContext, CallRequest, Message, NoObserver, Prompt, Provider};
use distill::spec::model::ModelSpec;
use serde_json::json;
use support::fake_openai::{FakeConfig, FakeServer};

const KEY: &str = "sk-test-SUPERSECRET-0123456789";

fn spec(v: serde_json::Value) -> ModelSpec {
    serde_json::from_value(v).unwrap()
}

async fn call(p: &OpenAiProvider) -> Result<distill::llm::CallResponse, distill::llm::CallError> {
    let problem = BTreeMap::new();
    let req = CallRequest {
        model: "m".into(),
        prompt: Prompt::Chat(vec![Message {
            role: "user".into(),
            content: "q".into(),
        }]),
        params: BTreeMap::new(),
        sample: 0,
    };
    p.call(
        &req,
        &CallContext {
            problem: &problem,
            observer: &NoObserver,
        },
    )
    .await
}

#[test]
fn api_keys() {
    // SAFETY: this test binary has this single test; no other thread reads the environment.
    unsafe {
        std::env::set_var("DISTILL_TEST_KEY", KEY);
        std::env::remove_var("DISTILL_TEST_MISSING_KEY");
        std::env::set_var("DISTILL_TEST_BOTH", "from-env");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Missing key: the error names the variable and how to set it.
        let missing = spec(json!({"provider": "together", "model": "m", "api_key_env": "DISTILL_TEST_MISSING_KEY"}));
        let e = check_api_key(&missing).unwrap_err();
        assert!(e.contains("DISTILL_TEST_MISSING_KEY") && e.contains("export") && e.contains(".env"), "{e}");
        let e = OpenAiProvider::new(&missing).unwrap_err().to_string();
        assert!(e.contains("DISTILL_TEST_MISSING_KEY"), "{e}");
        // openai-compatible needs a base_url, but no key.
        let e = check_api_key(&spec(json!({"provider": "openai-compatible"}))).unwrap_err();
        assert!(e.contains("base_url"), "{e}");

        // A wrong key: the server echoes it; neither the error nor Debug shows it.
        let server = FakeServer::start(FakeConfig { api_key: Some("sk-other".into()), ..Default::default() }).await;
        let s = spec(json!({"provider": "openai-compatible", "model": "m", "base_url": server.base_url(), "api_key_env": "DISTILL_TEST_KEY"}));
        let p = OpenAiProvider::new(&s).unwrap();
        let dbg = format!("{p:?}");
        assert!(!dbg.contains(KEY) && dbg.contains("redacted"), "{dbg}");
        let e = call(&p).await.unwrap_err();
        assert!(!e.retryable);
        assert!(!e.message.contains(KEY) && e.message.contains("Incorrect API key"), "{}", e.message);
        assert!(!format!("{e:?}").contains(KEY));
        assert_eq!(server.requests()[0].headers["authorization"], format!("Bearer {KEY}"));

        // The right key works; no key is sent when none is configured.
        let server = FakeServer::start(FakeConfig { api_key: Some(KEY.into()), ..Default::default() }).await;
        let s = spec(json!({"provider": "openai-compatible", "model": "m", "base_url": server.base_url(), "api_key_env": "DISTILL_TEST_KEY"}));
        call(&OpenAiProvider::new(&s).unwrap()).await.unwrap();
        let open = FakeServer::start(FakeConfig::default()).await;
        let s = spec(json!({"provider": "openai-compatible", "model": "m", "base_url": open.base_url()}));
        call(&OpenAiProvider::new(&s).unwrap()).await.unwrap();
        assert!(!open.requests()[0].headers.contains_key("authorization"));

        // .env in the working directory is read; a variable already set wins.
        let dir = std::env::temp_dir().join(format!("distill-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".env"), "# keys\nDISTILL_TEST_DOTENV=sk-dotenv-42\nDISTILL_TEST_BOTH=from-file\n").unwrap();
        let old = std::env::current_dir().unwrap();
        std::env::set_current_dir(&dir).unwrap();
        let s = spec(json!({"provider": "openai-compatible", "model": "m", "base_url": open.base_url(), "api_key_env": "DISTILL_TEST_DOTENV"}));
        check_api_key(&s).unwrap();
        call(&OpenAiProvider::new(&s).unwrap()).await.unwrap();
        let s = spec(json!({"provider": "openai-compatible", "model": "m", "base_url": open.base_url(), "api_key_env": "DISTILL_TEST_BOTH"}));
        call(&OpenAiProvider::new(&s).unwrap()).await.unwrap();
        std::env::set_current_dir(old).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let auth: Vec<String> = open.requests().iter().filter_map(|r| r.headers.get("authorization").cloned()).collect();
        assert_eq!(auth, ["Bearer sk-dotenv-42", "Bearer from-env"]);
    });
}
