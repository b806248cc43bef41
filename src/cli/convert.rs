//! `distill pipeline convert FILE… --out DIR`: writes each of the original tool's flat
//! configs as a distill pipeline plus its `.hbs` prompts (`migrate`), validates what it
//! wrote, prints the conversion's notes, and warns about configs that would share every
//! cache key (a seed sweep without distinct seeds replays one draw).

use std::path::{Path, PathBuf};

use crate::migrate::{self, Converted};
use crate::spec::{self, Diag, LoadOptions};

/// Converts every file; exit code 0 when all converted and validate, else 2.
pub fn run(files: &[PathBuf], out: &Path) -> i32 {
    let mut converted: Vec<Converted> = Vec::new();
    let mut failed = 0usize;
    for file in files {
        match convert_one(file) {
            Ok(c) => converted.push(c),
            Err(diags) => {
                failed += 1;
                for d in &diags {
                    eprintln!("{d}");
                }
            }
        }
    }
    let sources: Vec<PathBuf> = converted.iter().map(|c| c.source.clone()).collect();
    let stems = migrate::output_stems(&sources);
    for (c, stem) in converted.iter().zip(&stems) {
        match write_and_check(c, out, stem) {
            Ok(line) => println!("{line}"),
            Err(diags) => {
                failed += 1;
                for d in &diags {
                    eprintln!("{d}");
                }
            }
        }
    }
    for group in migrate::identical_keys(&converted) {
        eprintln!(
            "warning: these configs would share every cache key, so their runs would be one draw: {}\n  hint: a seed sweep needs distinct `_seed_N` names (distill sets `sample_offset` from them), or set `sample_offset:` by hand",
            group
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "{} converted, {} failed; pipelines and prompts in {}",
        files.len() - failed,
        failed,
        out.display()
    );
    if failed > 0 { 2 } else { 0 }
}

fn convert_one(file: &Path) -> Result<Converted, Vec<Diag>> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![Diag::new(&shown, None, format!("cannot read: {e}"))])?;
    let (tree, _) = spec::load::parse_yaml(&text, &shown).map_err(|d| vec![d])?;
    if !migrate::is_flat(&tree) {
        return Err(vec![
            Diag::new(&shown, None, "not one of the original tool's experiment configs (it has `nodes:` or none of experiment_name, reasoning_model, experiment_type, data_path)")
                .hint("a distill pipeline needs no conversion"),
        ]);
    }
    migrate::convert(file, &text, tree).map_err(|f| {
        f.issues
            .into_iter()
            .map(|i| {
                let d = Diag::new(&shown, i.line, i.message);
                match i.hint {
                    Some(h) => d.hint(h),
                    None => d,
                }
            })
            .collect()
    })
}

/// Writes the pipeline and loads it back (every check of `pipeline validate`).
fn write_and_check(c: &Converted, out: &Path, stem: &str) -> Result<String, Vec<Diag>> {
    let shown = c.source.display().to_string();
    let file = migrate::write(c, out, stem)
        .map_err(|e| vec![Diag::new(&shown, None, format!("{e:#}"))])?;
    let p = spec::load(&file, &LoadOptions::default())?;
    let mut line = format!(
        "{} -> {}: valid — {} nodes per problem and sample, {} problem(s) × {} sample(s)",
        shown,
        file.display(),
        p.nodes.len(),
        p.problems.len(),
        p.spec.samples
    );
    for n in c.notes.iter().chain(&c.ignored) {
        line.push_str(&format!("\n  note: {n}"));
    }
    Ok(line)
}
