//! The end-of-run report folded while the run goes: each problem's record is surveyed and
//! turned into the report's model as it finishes, and added to the tally in results.json's
//! order, so the end of a run need not read its results.json back (twice) to report it.
//!
//! The tally is begun at the first problem, against the shape (graded nodes, rounds, samples,
//! vote ks) that problem and config.json give. At the end the shape of the whole survey is
//! computed as `distill report` would compute it from the file; only when the two agree, the
//! run is complete and every selected problem has a record is the folded tally used. Any
//! other run is streamed from its file as before, so the numbers are those of
//! `distill report RUN_DIR` either way (debug builds check it on every run).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::load::{Problem, Run};
use super::records::{Reading, Shape, problem, shape};
use super::survey::Survey;
use super::tally::Tally;
use super::{ReportOptions, RunReport};
use crate::runfile::records::{NodeRecord, ProblemRecord};
use indexmap::IndexMap;

/// The tally of a run in progress ([`Live::finished`], [`Live::written`]).
pub struct Live {
    /// config.json as the run wrote it (its selected ids aside).
    config: Value,
    /// The pipeline's node ids in order: results.json lists each sample's nodes so.
    order: Vec<String>,
    survey: Survey,
    begun: Option<Begun>,
    /// Finished, not yet in results.json (a problem before them is still open), by index.
    waiting: BTreeMap<usize, Problem>,
    added: usize,
}

/// What the tally was begun against, and the tally.
struct Begun {
    shape: Shape,
    rounds: Vec<u32>,
    vote_ks: BTreeSet<u64>,
    tally: Tally<'static>,
}

impl Live {
    /// For a run whose config.json is `config`.
    pub fn new(config: Value) -> Live {
        let ids = config["expanded_nodes"].as_array().into_iter().flatten();
        let order = ids.filter_map(|n| n["id"].as_str().map(str::to_string));
        Live {
            order: order.collect(),
            config,
            survey: Survey::counting(),
            begun: None,
            waiting: BTreeMap::new(),
            added: 0,
        }
    }

    /// A problem finished: surveyed and kept (in the report's model) until it is written.
    pub fn finished(&mut self, p: &ProblemRecord) {
        self.survey.add_record(p);
        if self.begun.is_none() {
            // a complete run's shape, as far as this first problem shows it
            let (shape, rounds, _) =
                shape(&self.survey, Some(&self.config), None, "complete", false);
            let head = Run {
                rounds: rounds.clone(),
                samples: shape.samples(),
                ..Default::default()
            };
            let vote_ks = self.survey.vote_ks.clone();
            let tally = Tally::new(&head, None, &vote_ks);
            self.begun = Some(Begun {
                shape,
                rounds,
                vote_ks,
                tally,
            });
        }
        if let Some(b) = &self.begun {
            // in results.json's order (costs are summed in it)
            let p = in_order(p, &self.order);
            self.waiting
                .insert(p.index, problem(&p, &b.rounds, &b.shape));
        }
    }

    /// Problems up to `index` are in results.json: they go to the tally, in order.
    pub fn written(&mut self, index: usize) {
        while let Some(e) = self.waiting.first_entry() {
            if *e.key() > index {
                break;
            }
            let p = e.remove();
            if let Some(b) = &mut self.begun {
                b.tally.add(&p);
                self.added += 1;
            }
        }
    }

    /// The report of the finished run in `dir`, when the folded tally is the report's (see
    /// the module's opening); else why the run must be read from its file.
    fn report(mut self, dir: &Path, bootstrap: usize, seed: u64) -> Result<RunReport, String> {
        self.written(usize::MAX);
        let rf = crate::runfile::open(dir)?;
        let reading = Reading::of(rf, self.survey, false)?;
        let b = self.begun.ok_or("no problem finished")?;
        if !reading.agrees(&b.shape, &b.rounds, &b.vote_ks) {
            return Err("the run's shape is not the first problem's".into());
        }
        if reading.head().status != "complete" {
            return Err(format!("the run is {}", reading.head().status));
        }
        if self.added != reading.surveyed() {
            return Err("problem ids are not unique".into());
        }
        let mut run = reading.into_head();
        super::shards::alone(&mut run, self.added);
        if run.label.is_empty() {
            run.label = "[1]".into();
        }
        Ok(b.tally.finish(&run, bootstrap, seed))
    }
}

/// `p` with each sample's nodes and its aggregates in the pipeline's `order`, as the
/// journal's assembly writes them to results.json (borrowed when they already are).
fn in_order<'a>(p: &'a ProblemRecord, order: &[String]) -> Cow<'a, ProblemRecord> {
    let pos = |id: &String| order.iter().position(|o| o == id).unwrap_or(usize::MAX);
    let sorted = |m: &IndexMap<String, NodeRecord>| m.keys().map(pos).is_sorted();
    if p.samples.iter().all(sorted) && sorted(&p.aggregates) {
        return Cow::Borrowed(p);
    }
    let mut p = p.clone();
    for m in p
        .samples
        .iter_mut()
        .chain(std::iter::once(&mut p.aggregates))
    {
        m.sort_by_cached_key(|id, _| pos(id));
    }
    Cow::Owned(p)
}

/// The report of one run at its end ([`super::report_with_compact`]'s first step), from the
/// folded tally when it holds, else from the run's file.
pub(super) fn one_run(
    path: &Path,
    opts: &ReportOptions,
    live: Option<Live>,
) -> Result<RunReport, String> {
    let bootstrap = opts.bootstrap.max(1);
    let streamed = || super::stream_one(path, None, bootstrap, opts.seed);
    let folded = match live.map(|l| l.report(path, bootstrap, opts.seed)) {
        Some(Ok(r)) => r,
        why => {
            let why = why.map_or("a resumed run".into(), |w| w.err().unwrap_or_default());
            tracing::debug!("report: read back from {} ({why})", path.display());
            return streamed();
        }
    };
    tracing::debug!("report: folded during the run");
    if cfg!(debug_assertions) {
        // the tests' runs are all debug builds: every one checks the two ways agree
        let from_file = streamed()?;
        let show = |r: &RunReport| serde_json::to_string(r).unwrap_or_default();
        assert_eq!(
            show(&folded),
            show(&from_file),
            "the report folded during the run differs from the report of its file"
        );
    }
    Ok(folded)
}
