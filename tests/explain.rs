//! `distill pipeline plan FILE --explain`: why each call to make misses the cache, against
//! the nearest record of the same node in an earlier run (changed parameters, an edited
//! prompt, another sample offset, an entry missing from this cache, a node never run).

mod common;

use common::{Project, iterated, sim_model, text};

fn plan(p: &Project, more: &[&str]) -> String {
    let mut args = vec!["pipeline", "plan", "pipelines/x.yaml", "--explain"];
    args.extend_from_slice(more);
    let o = p.run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn explain_names_what_differs_from_the_nearest_record() {
    let p = Project::new();
    p.write("pipelines/x.yaml", &iterated("x", 1, &sim_model(1), ""));
    let o = p.run(&[
        "pipeline",
        "run",
        "pipelines/x.yaml",
        "--no-progress",
        "--question-ids",
        "add-1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // another temperature: the parameter, old → new; a problem never run: said so
    let out = plan(
        &p,
        &[
            "--question-ids",
            "add-1,mul-1",
            "--set",
            "models.reasoner.params.temperature=0.9",
        ],
    );
    assert!(out.contains("add-1/attempt_0 sample 0: nearest: "), "{out}");
    assert!(out.contains("params: temperature 0.6 → 0.9"), "{out}");
    assert!(
        out.contains("mul-1/attempt_0 sample 0: no earlier run has this node"),
        "{out}"
    );
    assert!(out.contains("wait on these answers"), "{out}");

    // an edited prompt: the first differing line
    let f = p.path().join("prompts/reason/default.hbs");
    let t = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, format!("Be brief.\n{t}")).unwrap();
    let out = plan(&p, &["--question-ids", "add-1"]);
    assert!(
        out.contains("prompt: ") && out.contains("first, line 1"),
        "{out}"
    );
    assert!(out.contains("+ \"Be brief.\""), "{out}");
    std::fs::write(&f, t).unwrap();

    // another sample offset; then the same pipeline with an empty cache: nothing differs
    let out = plan(&p, &["--question-ids", "add-1", "--set", "sample_offset=3"]);
    assert!(out.contains("sample: 0 → 3"), "{out}");
    let out = plan(&p, &["--question-ids", "add-1", "--cache", "empty-cache"]);
    assert!(out.contains("nothing differs from"), "{out}");
    assert!(out.contains("not in this cache"), "{out}");

    // all cached: nothing to explain
    let out = plan(&p, &["--question-ids", "add-1"]);
    assert!(out.contains("why 0 call(s) miss the cache"), "{out}");
}
