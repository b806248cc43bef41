//! Recorded-shape rows for the fake datasets-server: a few rows per dataset with the column
//! names and JSON types the real splits have (as far as known offline; see registry.rs),
//! and `fake_with_all` that serves every registry dataset at once.

use serde_json::{Value, json};

use super::{FakeHf, FakeSplit};

fn split(features: &[(&str, &str)], rows: Vec<Value>) -> FakeSplit {
    FakeSplit {
        features: features
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect(),
        rows,
    }
}

/// Maxwell-Jia/AIME_2024 (default/train): ID, Problem, Solution, Answer (int64).
pub fn aime_2024() -> FakeSplit {
    let p = |id: &str, q: &str, s: &str, a: Value| json!({"ID": id, "Problem": q, "Solution": s, "Answer": a});
    split(
        &[
            ("ID", "string"),
            ("Problem", "string"),
            ("Solution", "string"),
            ("Answer", "int64"),
        ],
        vec![
            p(
                "2024-II-4",
                "Let $x,y$ and $z$ be positive real numbers that satisfy the following system of \
                 equations: ... Find $m+n$.",
                "Denote $\\log_2(x) = a$ ... $\\implies \\boxed{033}$.",
                json!(33),
            ),
            p(
                "2024-II-12",
                "Let $O(0,0), A(\\tfrac{1}{2}, 0),$ and $B(0, \\tfrac{\\sqrt{3}}{2})$ be points \
                 in the coordinate plane. ... Find $p + q$.",
                "Begin by finding the equation of the line $\\overline{AB}$ ... $\\boxed{23}$",
                json!(23),
            ),
            p(
                "2024-I-2",
                "There exist real numbers $x$ and $y$, both greater than 1, such that \
                 $\\log_x\\left(y^x\\right)=\\log_y\\left(x^{4y}\\right)=10$. Find $xy$.",
                "By properties of logarithms ... $xy = \\boxed{025}$.",
                json!(25),
            ),
            p(
                "2024-I-7",
                "Find the largest possible real part of \\[(75+117i)z+\\frac{96+144i}{z}\\] \
                 where $z$ is a complex number with $|z|=4$.",
                "Let $z=4e^{i\\theta}$ ... the answer is $\\boxed{540}$.",
                json!(540),
            ),
            p(
                "2024-I-15",
                "Let $\\mathcal{B}$ be the set of rectangular boxes with surface area $54$ and \
                 volume $23$. ... Find $p+q$.",
                "Observe that the \"worst\" possible box ... $\\boxed{721}$",
                json!(721),
            ),
        ],
    )
}

/// yentinglin/aime_2025 (default/train): id, problem, solution, answer (string), url, year.
pub fn aime_2025() -> FakeSplit {
    let url = |n: u32| {
        format!("https://artofproblemsolving.com/wiki/index.php/2025_AIME_I_Problems/Problem_{n}")
    };
    split(
        &[
            ("id", "int64"),
            ("problem", "string"),
            ("solution", "string"),
            ("answer", "string"),
            ("url", "string"),
            ("year", "string"),
        ],
        vec![
            json!({"id": 0, "problem": "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b$.",
                   "solution": "We have $b+7 \\mid 9b+7$ ... $21+49=\\boxed{70}$", "answer": "70", "url": url(1), "year": "2025"}),
            json!({"id": 1, "problem": "In $\\triangle ABC$ points $D$ and $E$ lie on $\\overline{AB}$ ... Find the area of heptagon $AFNBCEM$.",
                   "solution": "... $\\boxed{588}$", "answer": "588", "url": url(2), "year": "2025"}),
            json!({"id": 2, "problem": "The $9$ members of a baseball team went to an ice-cream parlor ... Find the remainder when $N$ is divided by $1000$.",
                   "solution": "... $\\boxed{016}$", "answer": "016", "url": url(3), "year": "2025"}),
        ],
    )
}

/// HuggingFaceH4/MATH-500 (default/test): problem, solution, answer, subject, level, unique_id.
pub fn math_500() -> FakeSplit {
    split(
        &[
            ("problem", "string"),
            ("solution", "string"),
            ("answer", "string"),
            ("subject", "string"),
            ("level", "int64"),
            ("unique_id", "string"),
        ],
        vec![
            json!({"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
                   "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ ... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
                   "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
                   "unique_id": "test/precalculus/807.json"}),
            json!({"problem": "If $f(x) = \\frac{3x-2}{x-2}$, what is the value of $f(-2) +f(-1)+f(0)$? Express your answer as a common fraction.",
                   "solution": "... $\\boxed{\\frac{14}{3}}$", "answer": "\\frac{14}{3}", "subject": "Algebra", "level": 3,
                   "unique_id": "test/algebra/2584.json"}),
            json!({"problem": "How many positive whole-number divisors does 196 have?",
                   "solution": "... $\\boxed{9}$", "answer": " 9 ", "subject": "Number Theory", "level": 3,
                   "unique_id": "test/number_theory/572.json"}),
        ],
    )
}

/// Idavidrein/gpqa (gpqa_diamond/train): a subset of its many columns, the mapped ones
/// included, with GPQA's stray whitespace.
pub fn gpqa_diamond() -> FakeSplit {
    let row = |q: &str, c: &str, w: [&str; 3], rec: &str, dom: &str, sub: &str| {
        json!({
            "Pre-Revision Question": q, "Pre-Revision Correct Answer": c,
            "Question": q, "Correct Answer": c,
            "Incorrect Answer 1": w[0], "Incorrect Answer 2": w[1], "Incorrect Answer 3": w[2],
            "Explanation": format!("Because {c}."), "Subdomain": sub,
            "Writer's Difficulty Estimate": "Hard graduate level", "Record ID": rec,
            "High-level domain": dom, "Canary String": null,
        })
    };
    let cols = [
        "Pre-Revision Question",
        "Pre-Revision Correct Answer",
        "Question",
        "Correct Answer",
        "Incorrect Answer 1",
        "Incorrect Answer 2",
        "Incorrect Answer 3",
        "Explanation",
        "Subdomain",
        "Writer's Difficulty Estimate",
        "Record ID",
        "High-level domain",
        "Canary String",
    ];
    let features: Vec<(&str, &str)> = cols.iter().map(|c| (*c, "string")).collect();
    split(
        &features,
        vec![
            row(
                "Two quantum states with energies E1 and E2 have a lifetime of 10^-9 sec and 10^-8 sec, respectively. Which one of the following options could be their energy difference so that they can be clearly resolved?\n",
                "10^-4 eV",
                ["10^-11 eV", "10^-8 eV\n", "10^-9 eV"],
                "recAAAAAAAAAAAAA1",
                "Physics",
                "Physics (general)",
            ),
            row(
                "trans-cinnamaldehyde was treated with methylmagnesium bromide, forming product 1. ... how many carbon atoms are there in product 3?",
                "11",
                ["12", "10", "14"],
                "recAAAAAAAAAAAAA2",
                "Chemistry",
                "Organic Chemistry",
            ),
            row(
                "A spin-half particle is in a linear superposition 0.5|\\uparrow\\rangle+sqrt(3)/2|\\downarrow\\rangle ... expectation value of 10\\sigma{z}+5\\sigma_{x}?",
                "-0.7",
                ["0.85", "1.65", "-1.4"],
                "recAAAAAAAAAAAAA3",
                "Physics",
                "Quantum Mechanics",
            ),
            row(
                "In a parallel universe where a magnet can have an isolated North or South pole, which of Maxwell's equations are different?",
                "The ones related to the circulation of the electric field and the divergence of the magnetic field.",
                [
                    "The one related to the divergence of the magnetic field.",
                    "The one related to the circulation of the magnetic field and the flux of the electric field.",
                    "The ones related to the divergence and the curl of the magnetic field.",
                ],
                "recAAAAAAAAAAAAA4",
                "Physics",
                "Electromagnetism and Photonics",
            ),
        ],
    )
}

/// openai/gsm8k (main/test): question, answer (solution text ending in `#### N`); `n` rows,
/// row `i`'s answer being `i * 1000 + 7` written with thousands separators.
pub fn gsm8k(n: usize) -> FakeSplit {
    split(
        &[("question", "string"), ("answer", "string")],
        (0..n)
            .map(|i| {
                let v = i * 1000 + 7;
                json!({
                    "question": format!("Janet's ducks lay {i} eggs per day. ... How much in dollars does she make every day at the farmers' market? (#{i})"),
                    "answer": format!("Janet sells {i} - 3 - 4 = <<{i}-3-4={v}>>{v} duck eggs a day.\n#### {}", with_commas(v)),
                })
            })
            .collect(),
    )
}

/// The expected GSM8K answer of row `i`.
pub fn gsm8k_answer(i: usize) -> String {
    (i * 1000 + 7).to_string()
}

fn with_commas(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (k, ch) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The revision sha the fake Hub reports for every dataset of `fake_with_all`.
pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A fake serving all five registry datasets (GSM8K with `gsm8k_rows` rows), each with
/// revision [`SHA`]; GPQA gated.
pub async fn fake_with_all(gsm8k_rows: usize) -> FakeHf {
    let f = FakeHf::start().await;
    f.add(
        "Maxwell-Jia/AIME_2024",
        "default",
        "train",
        aime_2024(),
        false,
        Some(SHA),
    );
    f.add(
        "yentinglin/aime_2025",
        "default",
        "train",
        aime_2025(),
        false,
        Some(SHA),
    );
    f.add(
        "HuggingFaceH4/MATH-500",
        "default",
        "test",
        math_500(),
        false,
        Some(SHA),
    );
    f.add(
        "Idavidrein/gpqa",
        "gpqa_diamond",
        "train",
        gpqa_diamond(),
        true,
        Some(SHA),
    );
    f.add(
        "openai/gsm8k",
        "main",
        "test",
        gsm8k(gsm8k_rows),
        false,
        Some(SHA),
    );
    f
}
