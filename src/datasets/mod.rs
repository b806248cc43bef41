//! Fetching public problem sets: `distill data pull NAME` (download a benchmark through the
//! Hugging Face datasets-server, map it into `id,question,solution,answer`, write it through
//! a temporary file and a rename, record its blake3 and source revision in
//! `data/SOURCES.md`) and `distill data list` (what can be pulled, what is present).
//! The per-dataset mapping is the table in `registry.rs`.

pub mod changes;
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
    /// Replace a local file whose content differs from what is pulled (else: refuse and
    /// say what changed).
    pub force: bool,
    /// Only pull this revision of the dataset; [`RECORDED`]: the one SOURCES.md recorded
    /// for the file.
    pub revision: Option<String>,
}

/// `--revision` without a value: the revision recorded in SOURCES.md.
pub const RECORDED: &str = "recorded";

impl PullOptions {
    /// The defaults: `data/…csv`, [`default_endpoint`], seed 0, `data/SOURCES.md`.
    pub fn new(name: &str) -> Self {
        PullOptions {
            name: name.to_string(),
            out: None,
            endpoint: default_endpoint(),
            seed: 0,
            sources_md: PathBuf::from("data/SOURCES.md"),
            force: false,
            revision: None,
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
    let file = sources::file_key(&opts.sources_md, &out);
    let recorded = sources::read(&opts.sources_md)
        .into_iter()
        .find(|e| e.file == file);
    let pin = pinned_revision(opts, src, &out, recorded.as_ref())?;
    let client = hf::Client::new(&opts.endpoint, token)?;
    let pinned_check = match &pin {
        Some(p) => Some(check_pin(&client, src, p, &out).await?),
        None => None,
    };
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
    let revision = match pinned_check {
        Some(r) => r,
        None => client
            .revision(src)
            .await
            .unwrap_or_else(|| "unknown".to_string()),
    };
    guard_overwrite(opts, src, &out, &bytes, recorded.as_ref(), &revision)?;

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

/// The revision `--revision` asks for, if any (`recorded`: SOURCES.md's for this file).
fn pinned_revision(
    opts: &PullOptions,
    src: &Source,
    out: &Path,
    recorded: Option<&sources::Entry>,
) -> Result<Option<String>, String> {
    let Some(r) = opts.revision.as_deref().map(str::trim) else {
        return Ok(None);
    };
    let r = if r == RECORDED {
        match recorded {
            Some(e) if e.revision != "unknown" => e.revision.clone(),
            Some(_) => {
                return Err(format!(
                    "{}: {} records revision `unknown` for {}: nothing to pin to; give one with --revision SHA",
                    src.name,
                    opts.sources_md.display(),
                    out.display()
                ));
            }
            None => {
                return Err(format!(
                    "{}: {} has no line for {}, so no revision is recorded; give one with --revision SHA",
                    src.name,
                    opts.sources_md.display(),
                    out.display()
                ));
            }
        }
    } else {
        r.to_string()
    };
    if r.is_empty() {
        return Err("--revision: give a commit sha (or no value: the recorded one)".into());
    }
    Ok(Some(r))
}

/// The datasets-server serves a dataset's current revision only: a pinned pull goes ahead
/// only while the Hub says the dataset is still at the pinned commit (or one it starts with).
async fn check_pin(
    client: &hf::Client,
    src: &Source,
    pin: &str,
    out: &Path,
) -> Result<String, String> {
    match client.revision(src).await {
        Some(now) if now == pin || now.starts_with(pin) => Ok(now),
        Some(now) => Err(format!(
            "{}: pinned to revision {pin}, but {} is now at {now}; the datasets-server serves              only the current revision, so the pinned rows cannot be fetched and {} was left              as it is (pull without --revision to take revision {now}; --force replaces a file              whose rows changed)",
            src.name,
            src.dataset,
            out.display()
        )),
        None => Err(format!(
            "{}: pinned to revision {pin}, but the Hub did not say which revision {} is at, so              the pin cannot be checked; nothing was written",
            src.name, src.dataset
        )),
    }
}

/// Refuses to replace a local file whose rows differ from the pulled ones unless `--force`,
/// naming what changed; with `--force` says what was replaced.
fn guard_overwrite(
    opts: &PullOptions,
    src: &Source,
    out: &Path,
    bytes: &[u8],
    recorded: Option<&sources::Entry>,
    revision: &str,
) -> Result<(), String> {
    let Ok(old) = std::fs::read(out) else {
        return Ok(());
    };
    if old == bytes {
        return Ok(());
    }
    let changes = changes::diff(&old, bytes).describe();
    let local_hash = blake3::hash(&old).to_hex().to_string();
    let was = match recorded {
        Some(e) if e.blake3 != local_hash => format!(
            " (the local file was also edited since it was pulled at revision {})",
            e.revision
        ),
        Some(e) if e.seed != src.uses_seed().then_some(opts.seed) => format!(
            " (recorded with choice seed {}, asked for {})",
            e.seed.map_or("-".into(), |s| s.to_string()),
            opts.seed
        ),
        Some(e) => format!(
            " (recorded at revision {}, upstream now at {revision})",
            e.revision
        ),
        None => format!(" ({} has no line for it)", opts.sources_md.display()),
    };
    let what = changes
        .iter()
        .map(|c| format!("\n  {c}"))
        .collect::<String>();
    if opts.force {
        eprintln!("note: {} replaced (--force){was}:{what}", out.display());
        return Ok(());
    }
    Err(format!(
        "{}: the pulled rows differ from {}{was}:{what}\nnothing was written: runs that used          the file keep their problem set. Pass --force to replace it, write elsewhere with          --out FILE, or pin to the recorded revision with --revision",
        src.name,
        out.display()
    ))
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
