//! "Did you mean" suggestions for misspelt ops, arguments and keys.

/// Edit distance between two strings (insertions, deletions, substitutions).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `" (did you mean `x`?)"` for the closest candidate, or `""` when none is close.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let word_l = word.to_ascii_lowercase();
    let best = candidates
        .iter()
        .map(|c| {
            // A candidate that is a prefix of the word (`conv2d` -> `conv`) counts as close.
            let d = if word_l.starts_with(*c) || c.starts_with(word_l.as_str()) {
                1
            } else {
                levenshtein(&word_l, c)
            };
            (d, *c)
        })
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= (word.chars().count() / 3).max(2) => {
            format!(" (did you mean `{c}`?)")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("stride", "strides"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kernel", "kernel"), 0);
        assert_eq!(levenshtein("flaten", "flatten"), 1);
    }

    #[test]
    fn suggestions() {
        let ops = ["conv", "max_pool", "avg_pool", "linear"];
        assert_eq!(did_you_mean("conv2d", &ops), " (did you mean `conv`?)");
        assert_eq!(did_you_mean("maxpool", &ops), " (did you mean `max_pool`?)");
        assert_eq!(did_you_mean("zzzzzz", &ops), "");
    }
}
