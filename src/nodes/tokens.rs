//! Token-level summary strategies of the `summarize` kind: the first k, last k, or a seeded
//! uniform random k tokens of a trace (kept in order), counted with an offline tokenizer
//! (tiktoken's `cl100k_base` or `o200k_base`, or the tokenizer.json of the model that wrote the
//! trace), whose name is recorded in the node's output because the paper counted the model's
//! own tokens. No model call.

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

pub const TOKENIZERS: [&str; 2] = ["cl100k_base", "o200k_base"];

/// Which tokens to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    First,
    Last,
    /// Seeded uniform subset.
    Random(u64),
}

/// Keeps k tokens of `text` (all of it when it has k or fewer) with any tokenizer (tiktoken's
/// or a model's tokenizer.json); returns the text, the tokens kept and whether it was cut. A
/// subset of tokens may split a multi-byte character: it decodes lossily.
pub fn keep_with(
    tok: &crate::calls::tokenizer::Tokenizer,
    text: &str,
    k: usize,
    pick: Pick,
) -> anyhow::Result<(String, usize, bool)> {
    let ids = tok.encode(text)?;
    if ids.len() <= k {
        return Ok((text.to_string(), ids.len(), false));
    }
    Ok((tok.decode(&pick_ids(&ids, k, pick))?, k, true))
}

fn pick_ids(toks: &[u32], k: usize, pick: Pick) -> Vec<u32> {
    match pick {
        Pick::First => toks[..k].to_vec(),
        Pick::Last => toks[toks.len() - k..].to_vec(),
        Pick::Random(seed) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut idx = sample(&mut rng, toks.len(), k).into_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| toks[i]).collect()
        }
    }
}

/// The seed of random-k: from the pipeline seed, the problem, the round and the sample.
pub fn random_seed(pipeline_seed: u64, problem: &str, round: u32, sample: u32) -> u64 {
    let h =
        blake3::hash(format!("random_k\0{pipeline_seed}\0{problem}\0{round}\0{sample}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_last_random_keep_k_tokens() {
        let tok = crate::calls::tokenizer::Tokenizer::load(
            Some("cl100k_base"),
            std::path::Path::new("."),
        )
        .unwrap();
        let keep = |t: &str, k: usize, pick: Pick| keep_with(&tok, t, k, pick).unwrap();
        let text = (0..500)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        for pick in [Pick::First, Pick::Last, Pick::Random(7)] {
            let (s, n, cut) = keep(&text, 40, pick);
            assert!(cut);
            assert_eq!(n, 40);
            let c = tok.count(&s);
            assert!(
                (38..=42).contains(&c),
                "{pick:?}: {c} tokens after re-encoding"
            );
        }
        assert!(keep(&text, 10, Pick::First).0.starts_with("word0 word1"));
        assert!(keep(&text, 10, Pick::Last).0.ends_with("word499"));
        let a = keep(&text, 30, Pick::Random(1)).0;
        assert_eq!(
            a,
            keep(&text, 30, Pick::Random(1)).0,
            "same seed, same subset"
        );
        assert_ne!(
            a,
            keep(&text, 30, Pick::Random(2)).0,
            "another seed, another subset"
        );
        assert_eq!(
            keep("short", 30, Pick::Random(1)),
            ("short".to_string(), 1, false)
        );
    }

    #[test]
    fn seeds_depend_on_problem_round_and_sample() {
        let s = random_seed(0, "p", 1, 0);
        assert_ne!(s, random_seed(1, "p", 1, 0));
        assert_ne!(s, random_seed(0, "q", 1, 0));
        assert_ne!(s, random_seed(0, "p", 2, 0));
        assert_ne!(s, random_seed(0, "p", 1, 1));
    }
}
