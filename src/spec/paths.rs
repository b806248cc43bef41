//! The one rule for every path a pipeline names (`problems.path`, `prompts_dir`, `extends`,
//! a model's `tokenizer:` file): a path written in a file resolves against that file's
//! folder, then each folder above it, then the working directory; a path given on the
//! command line (`--set problems.path=…`) resolves against the working directory. An
//! absolute path is taken as it is. So `distill pipeline validate /repo/pipelines/x.yaml`
//! works from any directory, and `data/x.csv` works from `pipelines/variants/` too.

use std::path::{Path, PathBuf};

use super::load::LocMap;

/// What the rule says, for hints.
pub const RULE: &str = "a path in a pipeline resolves against the file's folder, its ancestors, then the working directory (a path given with --set: against the working directory)";

/// Resolves `rel` written in `file` (None: given on the command line). When it exists
/// nowhere, the path as given (relative to the working directory), for the error message.
pub fn resolve_in(rel: &str, file: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(rel);
    if p.is_absolute() {
        return p;
    }
    if let Some(file) = file {
        let dir = file.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        for base in dir.ancestors() {
            let c = base.join(rel);
            if c.exists() {
                return clean(c);
            }
        }
        // a relative folder's ancestors stop at its first component: go on above the
        // working directory's equivalent of it
        if dir.is_relative()
            && let Ok(abs) = std::path::absolute(dir)
        {
            for base in abs.ancestors() {
                let c = base.join(rel);
                if c.exists() {
                    return c;
                }
            }
        }
    }
    // then the working directory (as given)
    p
}

/// Resolves the path at `key` of the merged tree (e.g. `problems.path`) against the file
/// that wrote it — a base pipeline's own folder for a path it wrote through `extends:` — or
/// the working directory when it came from the command line.
pub fn resolve_key(rel: &str, key: &str, locs: &LocMap, pipeline_file: &Path) -> PathBuf {
    let loc = locs.find(key);
    let written_in = Path::new(&loc.file);
    let file = if loc.line.is_some() && written_in.is_file() {
        Some(written_in)
    } else if loc.line.is_none() && !written_in.is_file() {
        None // --set or another command-line source
    } else {
        Some(pipeline_file)
    };
    resolve_in(rel, file)
}

/// `./data/x.csv` → `data/x.csv` (the folder `.` the search starts in adds nothing).
fn clean(p: PathBuf) -> PathBuf {
    p.strip_prefix(".").map(Path::to_path_buf).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_folder_then_its_ancestors_then_the_working_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("pipelines/variants")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("pipelines/variants/data")).unwrap();
        std::fs::write(root.join("data/a.csv"), "").unwrap();
        std::fs::write(root.join("data/b.csv"), "").unwrap();
        std::fs::write(root.join("pipelines/variants/data/b.csv"), "").unwrap();
        let file = root.join("pipelines/variants/p.yaml");
        // found above the file's folder
        assert_eq!(
            resolve_in("data/a.csv", Some(&file)),
            root.join("data/a.csv")
        );
        // the nearest wins: the file's own folder first
        assert_eq!(
            resolve_in("data/b.csv", Some(&file)),
            root.join("pipelines/variants/data/b.csv")
        );
        // absolute as given; nowhere: as given
        let abs = root.join("data/a.csv");
        assert_eq!(resolve_in(abs.to_str().unwrap(), Some(&file)), abs);
        assert_eq!(
            resolve_in("data/none.csv", Some(&file)),
            PathBuf::from("data/none.csv")
        );
        // the command line: the working directory only
        assert_eq!(resolve_in("data/a.csv", None), PathBuf::from("data/a.csv"));
    }
}
