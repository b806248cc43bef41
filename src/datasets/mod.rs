//! Fetching public problem sets: `distill data pull NAME` (download a benchmark through the
//! Hugging Face datasets-server, map it into `id,question,solution,answer`, write it through
//! a temporary file and a rename, record its blake3 and source revision in
//! `data/SOURCES.md`) and `distill data list` (what can be pulled, what is present).
//! The per-dataset mapping is the table in `registry.rs`.

pub mod hf;
pub mod normalize;
pub mod registry;
pub mod sources;

use std::path::{Path, PathBuf};

pub use registry::{SOURCES, Source};

/// What `distill data pull` was asked to do.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// A name of the table (`aime-2024`, …).
    pub name: String,
    /// Default: `data/<name with - → _>.csv`.
    pub out: Option<PathBuf>,
    /// The datasets-server base URL (default [`default_endpoint`]).
    pub endpoint: String,
    /// The multiple-choice shuffle seed (GPQA), recorded in SOURCES.md.
    pub seed: u64,
    /// Default `data/SOURCES.md`.
    pub sources_md: PathBuf,
}

impl PullOptions {
    /// The defaults: `data/…csv`, [`default_endpoint`], seed 0, `data/SOURCES.md`.
    pub fn new(name: &str) -> Self {
        PullOptions {
            name: name.to_string(),
            out: None,
            endpoint: default_endpoint(),
            seed: 0,
            sources_md: PathBuf::from("data/SOURCES.md"),
        }
    }
}

/// What a pull wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    pub path: PathBuf,
    pub rows: usize,
    pub blake3: String,
    pub dataset: String,
    /// The dataset's commit on the Hub, or `unknown`.
    pub revision: String,
}

/// `DISTILL_HF_ENDPOINT` if set, else the public datasets-server.
pub fn default_endpoint() -> String {
    std::env::var("DISTILL_HF_ENDPOINT")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| hf::DEFAULT_ENDPOINT.to_string())
}

/// `data/<name with - → _>.csv`.
pub fn default_out(name: &str) -> PathBuf {
    Path::new("data").join(format!("{}.csv", name.replace('-', "_")))
}

/// `HF_TOKEN` from the environment, else from `./.env`; empty counts as unset.
pub fn hf_token() -> Option<String> {
    crate::llm::openai::keys::lookup_var("HF_TOKEN")
}

/// Pulls, maps, normalizes, writes (temp file + rename), records the blake3, dataset id and
/// revision in SOURCES.md and prints a summary line. Every failure is an `Err(message)`
/// (the CLI exits 2) and leaves no partial file behind; an existing file is only replaced
/// by a complete one. The token is `HF_TOKEN` (environment or `.env`).
pub async fn pull(opts: &PullOptions) -> Result<PullReport, String> {
    pull_with_token(opts, hf_token()).await
}

/// [`pull`] with the Hugging Face token given explicitly (`None`: no token).
pub async fn pull_with_token(
    opts: &PullOptions,
    token: Option<String>,
) -> Result<PullReport, String> {
    let src = registry::find(&opts.name)?;
    if src.gated && token.is_none() {
        return Err(format!(
            "{} comes from {}, a gated dataset: HF_TOKEN is not set. Accept the dataset's \
             terms at {}, create a read token at https://huggingface.co/settings/tokens, and \
             set it in the environment (`export HF_TOKEN=hf_...`) or in a .env file in the \
             directory you run from (`HF_TOKEN=hf_...`)",
            src.name,
            src.dataset,
            src.hub_url()
        ));
    }
    let out = opts.out.clone().unwrap_or_else(|| default_out(src.name));
    let client = hf::Client::new(&opts.endpoint, token)?;
    let split = client
        .fetch_rows(src, |features| normalize::check_columns(src, features))
        .await?;
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(src.csv_header())
        .map_err(|e| format!("writing CSV: {e}"))?;
    for (row_idx, row) in &split.rows {
        let rec = normalize::map_row(src, *row_idx, row, opts.seed)?;
        w.write_record(&rec)
            .map_err(|e| format!("writing CSV: {e}"))?;
    }
    let bytes = w.into_inner().map_err(|e| format!("writing CSV: {e}"))?;
    let rows = split.rows.len();
    let revision = client
        .revision(src)
        .await
        .unwrap_or_else(|| "unknown".to_string());

    crate::atomic::write_checked(&out, &bytes, |tmp| {
        let set = crate::data::load(tmp).map_err(|e| {
            format!(
                "{}: the mapped rows do not form a valid problem set ({e}); fix the mapping in \
                 src/datasets/registry.rs",
                src.name
            )
        })?;
        if set.problems.len() != rows {
            return Err(format!(
                "{}: wrote {rows} rows but the file reads back as {}",
                src.name,
                set.problems.len()
            ));
        }
        Ok(())
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let entry = sources::Entry {
        file: sources::file_key(&opts.sources_md, &out),
        name: src.name.to_string(),
        dataset: src.dataset.to_string(),
        config_split: format!("{}/{}", src.config, src.split),
        revision: revision.clone(),
        rows,
        seed: src.uses_seed().then_some(opts.seed),
        blake3: hash.clone(),
        pulled: today(),
    };
    sources::record(&opts.sources_md, &entry).map_err(|e| {
        format!(
            "{} was written ({rows} rows, blake3 {hash}) but recording it in {} failed: {e}",
            out.display(),
            opts.sources_md.display()
        )
    })?;
    let seed = if src.uses_seed() {
        format!(", choice seed {}", opts.seed)
    } else {
        String::new()
    };
    println!(
        "pulled {}: {rows} rows from {} ({}/{}) at revision {revision}{seed} -> {} (blake3 {hash}); recorded in {}",
        src.name,
        src.dataset,
        src.config,
        src.split,
        out.display(),
        opts.sources_md.display()
    );
    Ok(PullReport {
        path: out,
        rows,
        blake3: hash,
        dataset: src.dataset.to_string(),
        revision,
    })
}

/// `distill data list`: every pullable set with its source and whether its default file in
/// `data_dir` is present (and still matches SOURCES.md), then the other CSVs there.
pub fn list(data_dir: &Path) -> String {
    let sources_md = data_dir.join("SOURCES.md");
    let entries = sources::read(&sources_md);
    let mut out = format!(
        "Problem sets `distill data pull NAME` fetches into {}:\n",
        data_dir.display()
    );
    let mut known_files = Vec::new();
    for src in SOURCES {
        let file = format!("{}.csv", src.name.replace('-', "_"));
        known_files.push(file.clone());
        let origin = format!(
            "{} ({}/{}){}",
            src.dataset,
            src.config,
            src.split,
            if src.gated {
                ", gated: needs HF_TOKEN"
            } else {
                ""
            }
        );
        out.push_str(&format!(
            "\n  {:<14}{}\n  {:<14}{origin}\n",
            src.name, src.about, ""
        ));
        out.push_str(&format!(
            "  {:<14}{file}: {}\n",
            "",
            status(data_dir, &file, src.name, &entries)
        ));
        for e in entries
            .iter()
            .filter(|e| e.name == src.name && e.file != file)
        {
            out.push_str(&format!(
                "  {:<14}also pulled to {} (revision {}, {} rows, {})\n",
                "",
                e.file,
                short(&e.revision),
                e.rows,
                e.pulled
            ));
        }
    }
    let mut others: Vec<String> = std::fs::read_dir(data_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|d| d.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".csv") && !known_files.contains(n))
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    if !others.is_empty() {
        out.push_str(&format!(
            "\nOther problem sets in {}:\n",
            data_dir.display()
        ));
        for f in others {
            let rows = crate::data::load(&data_dir.join(&f))
                .map(|s| rows_text(s.problems.len()))
                .unwrap_or_else(|e| format!("does not load: {e}"));
            out.push_str(&format!("  {f}: {rows}\n"));
        }
    }
    out
}

/// The state of one default file.
fn status(data_dir: &Path, file: &str, name: &str, entries: &[sources::Entry]) -> String {
    let path = data_dir.join(file);
    let Ok(bytes) = std::fs::read(&path) else {
        return format!("not pulled (distill data pull {name})");
    };
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let rows = match crate::data::load(&path) {
        Ok(s) => rows_text(s.problems.len()),
        Err(e) => format!("does not load: {e}"),
    };
    match entries.iter().find(|e| e.file == file) {
        Some(e) if e.blake3 == hash => format!(
            "present, {rows}, revision {}, pulled {}{}",
            short(&e.revision),
            e.pulled,
            e.seed.map(|s| format!(", seed {s}")).unwrap_or_default()
        ),
        Some(_) => format!(
            "present, {rows}, CHANGED since it was pulled (its blake3 differs from SOURCES.md; \
             `distill data pull {name}` restores it)"
        ),
        None => format!("present, {rows}, not recorded in SOURCES.md"),
    }
}

fn rows_text(n: usize) -> String {
    if n == 1 {
        "1 row".to_string()
    } else {
        format!("{n} rows")
    }
}

fn short(rev: &str) -> &str {
    if rev.len() > 12 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        &rev[..12]
    } else {
        rev
    }
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
