//! Problem files: checks at load, rows read back, selections, changed files.

use super::*;

/// Every row read whole in one pass, as the loader before lazy rows did (the reference).
fn eager(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .unwrap();
    let names: Vec<String> = rdr
        .headers()
        .unwrap()
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            names
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn write(d: &tempfile::TempDir, name: &str, text: &[u8]) -> PathBuf {
    let f = d.path().join(name);
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn rows_read_lazily_are_the_rows_read_whole() {
    let d = tempfile::tempdir().unwrap();
    let text = concat!(
        "\u{feff}id,question,solution,answer,topic\r\n",
        "a,\"What is 1+1?\nThink, then answer.\",\"first line\r\nsecond \"\"quoted\"\"\",2,arith\r\n",
        " b ,plain,,3,\r\n",
        "\r\n",
        "c,\"a, b, and c\",\"\",\"4\",\"x\"\"y\"\n",
        "d,\"ü → ∞\",s,5,z"
    );
    let f = write(&d, "p.csv", text.as_bytes());
    let want = eager(&f);
    let file = ProblemFile::open(&f).unwrap();
    assert_eq!(file.len(), want.len());
    assert_eq!(
        file.columns,
        ["id", "question", "solution", "answer", "topic"]
    );
    let all = Selection::of(&file, (0..file.len() as u32).collect());
    for (i, p) in all.iter().enumerate() {
        let p = p.unwrap();
        assert_eq!(p.index, i);
        assert_eq!(p.fields(), &want[i], "row {i}");
        assert_eq!(p.id, want[i]["id"].trim());
    }
    assert_eq!(
        file.problem(0).unwrap().question(),
        "What is 1+1?\nThink, then answer."
    );
    assert_eq!(file.problem(1).unwrap().id, "b");
    // in any order, one at a time
    assert_eq!(all.get(3).unwrap().answer(), "5");
    assert_eq!(all.get(2).unwrap().get("topic"), Some("x\"y"));
    assert_eq!(
        file.file_hash,
        blake3::hash(text.as_bytes()).to_hex().to_string()
    );
    let found = file.find(&["c", "b", "zz"]).unwrap();
    assert_eq!(
        found,
        HashMap::from([("c".to_string(), 2), ("b".to_string(), 1)])
    );
}

#[test]
fn a_row_changed_after_loading_is_an_error_not_another_problem() {
    let d = tempfile::tempdir().unwrap();
    let f = write(&d, "p.csv", b"id,question,answer\na,q1,1\nb,q2,2\n");
    let file = ProblemFile::open(&f).unwrap();
    // the same length, another answer, written in place
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all_at(b"b,q2,7", 26)
        .unwrap();
    assert_eq!(file.problem(0).unwrap().answer(), "1");
    let e = file.problem(1).unwrap_err().to_string();
    assert!(
        e.contains("changed during the run") && e.contains("p.csv"),
        "{e}"
    );
    // truncated
    std::fs::write(&f, b"id,question,answer\n").unwrap();
    assert!(file.problem(0).is_err());
    // replaced by a new file (an editor's save): the loaded one is still read
    let f2 = write(&d, "q.csv", b"id,question,answer\na,q1,1\n");
    let file = ProblemFile::open(&f2).unwrap();
    let tmp = write(&d, "q.csv.new", b"id,question,answer\na,other,9\n");
    std::fs::rename(&tmp, &f2).unwrap();
    assert_eq!(file.problem(0).unwrap().question(), "q1");
}

#[test]
fn bad_files_are_named_with_their_line() {
    let d = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "id,question,answer\na,q,1\n\"x\ny\",q,2\na,q3,3\n",
            "p.csv:5: duplicate id `a`",
        ),
        ("id,question,answer\na,q,1\n,q,2\n", "p.csv:3: empty id"),
        (
            "id,question,answer\na, ,1\n",
            "p.csv:2: problem `a` has an empty question",
        ),
        ("id,question,answer\na,q\n", "p.csv:2: bad CSV row"),
        ("id,question,answer\n", "no rows"),
        ("id,question,id\n", "column `id` appears twice"),
    ] {
        let f = write(&d, "p.csv", text.as_bytes());
        let e = ProblemFile::open(&f).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn seen_tells_colliding_texts_apart() {
    let texts = ["a", "b", "c"];
    let mut s = Seen::default();
    assert_eq!(s.first_of("a", 0, |_| unreachable!()).unwrap(), None);
    assert_eq!(
        s.first_of("a", 1, |j| Ok(texts[j as usize].into()))
            .unwrap(),
        Some(0)
    );
    // a forced collision: "b" filed under "a"'s hash
    let h = hash64("b");
    s.first.insert(h, 0);
    assert_eq!(
        s.first_of("b", 2, |j| Ok(texts[j as usize].into()))
            .unwrap(),
        None
    );
    assert_eq!(
        s.first_of("b", 3, |j| Ok(texts[j as usize].into()))
            .unwrap(),
        Some(2)
    );
}
