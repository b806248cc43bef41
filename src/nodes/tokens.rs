//! Token-level summary strategies of the `summarize` kind: the first k, last k, or a seeded
//! uniform random k tokens of a trace (kept in order), counted with an offline tokenizer
//! (tiktoken's `cl100k_base` by default, or `o200k_base`), whose name is recorded in the
//! node's output because the paper counted the summarizer's own tokens. No model call.

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use tiktoken_rs::CoreBPE;

pub const TOKENIZERS: [&str; 2] = ["cl100k_base", "o200k_base"];

pub fn tokenizer(name: &str) -> Option<&'static CoreBPE> {
    match name {
        "cl100k_base" => Some(tiktoken_rs::cl100k_base_singleton()),
        "o200k_base" => Some(tiktoken_rs::o200k_base_singleton()),
        _ => None,
    }
}

/// Which tokens to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    First,
    Last,
    /// Seeded uniform subset.
    Random(u64),
}

/// Keeps k tokens of `text` (all of it when it has k or fewer); returns the text and the
/// number of tokens kept.
pub fn keep_tokens(bpe: &CoreBPE, text: &str, k: usize, pick: Pick) -> (String, usize) {
    let toks = bpe.encode_ordinary(text);
    if toks.len() <= k {
        return (text.to_string(), toks.len());
    }
    let kept = pick_ids(&toks, k, pick);
    // a subset of tokens may split a multi-byte character: decode bytes, then lossily
    let bytes: Vec<u8> = bpe.decode_bytes(&kept).unwrap_or_default();
    let s = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    (s, k)
}

/// `keep_tokens` with any tokenizer (a model's `tokenizer:`: tiktoken or tokenizer.json);
/// returns the text, the tokens kept and whether the text was cut.
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

pub fn count(bpe: &CoreBPE, text: &str) -> usize {
    bpe.encode_ordinary(text).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_last_random_keep_k_tokens() {
        let bpe = tokenizer("cl100k_base").unwrap();
        let text = (0..500)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        for pick in [Pick::First, Pick::Last, Pick::Random(7)] {
            let (s, n) = keep_tokens(bpe, &text, 40, pick);
            assert_eq!(n, 40);
            let c = count(bpe, &s);
            assert!(
                (38..=42).contains(&c),
                "{pick:?}: {c} tokens after re-encoding"
            );
        }
        let (f, _) = keep_tokens(bpe, &text, 10, Pick::First);
        assert!(f.starts_with("word0 word1"));
        let (l, _) = keep_tokens(bpe, &text, 10, Pick::Last);
        assert!(l.ends_with("word499"));
        let a = keep_tokens(bpe, &text, 30, Pick::Random(1)).0;
        assert_eq!(
            a,
            keep_tokens(bpe, &text, 30, Pick::Random(1)).0,
            "same seed, same subset"
        );
        assert_ne!(
            a,
            keep_tokens(bpe, &text, 30, Pick::Random(2)).0,
            "another seed, another subset"
        );
        assert_eq!(keep_tokens(bpe, "short", 30, Pick::Random(1)).0, "short");
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
