//! Closest names for a mistyped one: edit distance, bounded so that a
//! million names cost a few milliseconds each.

/// Levenshtein distance between `a` and `b`, or None when over `max`.
pub fn distance(a: &str, b: &str, max: usize) -> Option<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[b.len()] <= max).then_some(prev[b.len()])
}

/// The numbers in a name (`6.1.0-57-amd64` → 6, 1, 0, 57, 64), at most 16.
fn numbers(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(16)
        .map(|p| p.get(..p.len().min(12)).unwrap_or("0").parse().unwrap_or(0))
        .collect()
}

/// How far apart two names' versions are: the numbers compared in order,
/// the first that differs deciding (its gap); names of other shapes last.
fn version_gap(a: &[u64], b: &[u64]) -> (usize, u64) {
    if a.len() != b.len() {
        return (usize::MAX, u64::MAX);
    }
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => (i, a[i].abs_diff(b[i])),
        None => (a.len(), 0),
    }
}

/// Up to `limit` of `names` closest to `query` (a third of its length at
/// most, at least 2 edits): fewest edits first, then the nearest version
/// (`6.1.0-65` is nearer 57 than 47), then by name.
pub fn closest<'a>(query: &str, names: impl Iterator<Item = &'a str>, limit: usize) -> Vec<String> {
    let max = (query.chars().count() / 3).max(2);
    let wanted = numbers(query);
    let mut scored: Vec<(usize, std::cmp::Reverse<usize>, u64, &str)> = names
        .filter_map(|n| {
            let edits = distance(query, n, max)?;
            let (at, gap) = version_gap(&wanted, &numbers(n));
            Some((edits, std::cmp::Reverse(at), gap, n))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.3 == b.3);
    scored.into_iter().take(limit).map(|(.., n)| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transposition_is_close_and_far_names_are_not() {
        assert_eq!(distance("6.1.0-56-amd46", "6.1.0-56-amd64", 3), Some(2));
        assert_eq!(distance("abc", "xyzxyz", 2), None);
        let names = ["6.1.0-56-amd64", "6.1.0-56-arm64", "6.1.0-55-amd64", "5.10.0-30-amd64"];
        let got = closest("6.1.0-56-amd46", names.iter().copied(), 3);
        assert_eq!(got[0], "6.1.0-56-amd64");
        assert!(!got.contains(&"5.10.0-30-amd64".to_string()));
    }

    #[test]
    fn among_equally_close_names_the_nearest_version_comes_first() {
        let names = ["6.1.0-47-amd64", "6.1.0-50-amd64", "6.1.0-53-amd64", "6.1.0-54-amd64", "6.1.0-57-amd64"];
        let got = closest("6.1.0-65-amd64", names.iter().copied(), 3);
        assert_eq!(got, ["6.1.0-57-amd64", "6.1.0-54-amd64", "6.1.0-53-amd64"]);
    }
}
