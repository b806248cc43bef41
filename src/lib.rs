//! distill: runs LLM reasoning experiments described as YAML graphs. The binary's CLI is in
//! `main.rs`; `cli` holds the commands so integration tests and benchmarks can share them.

pub mod atomic;
pub mod bundle;
pub mod cache;
pub mod calls;
pub mod cli;
pub mod dashboard;
pub mod data;
pub mod datasets;
pub mod exec;
pub mod grade;
pub mod graph;
pub mod llm;
pub mod migrate;
pub mod nodes;
pub mod regrade;
pub mod remote;
pub mod report;
pub mod runfile;
pub mod spec;
pub mod template;
pub mod tls;
