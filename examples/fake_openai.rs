//! Runs the fake OpenAI-compatible server of the tests as a standalone process (for
//! benchmarks and manual runs): `cargo run --example fake_openai -- --port 8099
//! --rps-limit 20 --latency-ms 50 [--fault-rate 0.1] [--reasoning-field] [--traces CSV]`
//! (`--traces` replays e.g. shared/traces/aime_2024_deepseek_r1_completions.csv). Its Batch
//! API spends `--batch-step-ms` in each status (default 150), fails `--batch-error-lines`
//! lines once, and with `--batch-log` prints every Batch API request.
//! Prints its base URL and serves until killed.

#[path = "../tests/support/fake_openai.rs"]
mod fake_openai;

use std::time::Duration;

use fake_openai::{FakeConfig, FakeServer, Fault};

fn main() -> anyhow::Result<()> {
    let mut cfg = FakeConfig::default();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match a.as_str() {
            "--port" => port = value("--port")?.parse()?,
            "--rps-limit" => cfg.rps_limit = Some(value("--rps-limit")?.parse()?),
            "--latency-ms" => cfg.latency = Duration::from_millis(value("--latency-ms")?.parse()?),
            "--fault-rate" => {
                cfg.fault_rate = value("--fault-rate")?.parse()?;
                cfg.faults = vec![
                    Fault::RateLimit {
                        retry_after_s: Some(1),
                        retry_after_ms: None,
                    },
                    Fault::ServerError,
                    Fault::Unavailable,
                    Fault::DropMidStream,
                    Fault::InvalidJson,
                ];
            }
            "--reasoning-field" => cfg.reasoning_field = true,
            "--batch-step-ms" => {
                cfg.batch.step = Duration::from_millis(value("--batch-step-ms")?.parse()?)
            }
            "--batch-error-lines" => {
                cfg.batch.error_lines = value("--batch-error-lines")?.parse()?
            }
            "--batch-log" => cfg.batch.log = true,
            "--traces" => {
                let path = std::path::PathBuf::from(value("--traces")?);
                cfg.responder = fake_openai::trace_responder(fake_openai::load_traces(&path)?);
            }
            "-h" | "--help" => {
                println!(
                    "fake_openai [--port N] [--rps-limit N] [--latency-ms N] [--fault-rate P] [--reasoning-field] [--traces CSV] [--batch-step-ms N] [--batch-error-lines N] [--batch-log]"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}` (see --help)"),
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = FakeServer::start_on(port, cfg).await;
        println!("{}", server.base_url());
        tokio::signal::ctrl_c().await?;
        let b = server.batches();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "served {} requests ({} answered 429); batch API: {} uploads, {} batches created, {} lines, {} status polls, {} cancels",
            server.request_count(),
            server.rate_limited_count(),
            n(&b.uploads),
            n(&b.created),
            n(&b.lines),
            n(&b.polls),
            n(&b.cancels)
        );
        server.shutdown();
        Ok(())
    })
}
