//! The iteration order of Scala 2.13's immutable `Set`/`Map` and mutable `HashMap`, which
//! Spark's REST API exposes wherever it serialises such a collection (the job ids of a SQL
//! execution, the stages it scans for metric maxima, RDD distributions per executor).
//!
//! Immutable sets and maps of up to four elements keep insertion order (`Set1`..`Set4`);
//! larger ones are CHAMP tries keyed by an "improved" hash and iterate node payload first,
//! then sub-nodes, each by 5-bit hash fragment. The mutable `HashMap` iterates its buckets
//! (hash spread by `h ^ h >>> 16`, table size a power of two, load factor 0.75) in order,
//! each bucket sorted by hash.

/// `scala.collection.Hashing.improve`, applied by immutable `HashSet`/`HashMap`.
fn improve(h: i32) -> u32 {
    let mut h = h.wrapping_add(!(h.wrapping_shl(9)));
    h ^= ((h as u32) >> 14) as i32;
    h = h.wrapping_add(h.wrapping_shl(4));
    (h ^ ((h as u32) >> 10) as i32) as u32
}

/// Java's `String.hashCode`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// `Long.hashCode` as Scala's `##` computes it for a boxed Long that fits an Int: the Int.
pub fn long_hash(v: i64) -> i32 {
    if v as i32 as i64 == v {
        v as i32
    } else {
        (v ^ (v >> 32)) as i32
    }
}

/// Positions of `hashes` (given in insertion order) in the order an immutable Scala
/// `Set`/`Map` with these keys iterates them.
pub fn immutable_order(hashes: &[i32]) -> Vec<usize> {
    if hashes.len() <= 4 {
        return (0..hashes.len()).collect();
    }
    let items: Vec<(u32, usize)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (improve(*h), i))
        .collect();
    let mut out = Vec::with_capacity(items.len());
    champ(&items, 0, &mut out);
    out
}

fn champ(items: &[(u32, usize)], shift: u32, out: &mut Vec<usize>) {
    if shift >= 32 {
        // full hash collision: a collision node keeps insertion order
        let mut v: Vec<usize> = items.iter().map(|(_, i)| *i).collect();
        v.sort();
        out.extend(v);
        return;
    }
    let frag = |h: u32| (h >> shift) & 31;
    let mut groups: std::collections::BTreeMap<u32, Vec<(u32, usize)>> = Default::default();
    for it in items {
        groups.entry(frag(it.0)).or_default().push(*it);
    }
    // payload (single entries) first, then sub-nodes, each in fragment order
    for g in groups.values() {
        if g.len() == 1 {
            out.push(g[0].1);
        }
    }
    for g in groups.values() {
        if g.len() > 1 {
            champ(g, shift + 5, out);
        }
    }
}

/// Positions of `hashes` (insertion order) in the order a Scala 2.13 `mutable.HashMap`
/// iterates them.
pub fn mutable_order(hashes: &[i32]) -> Vec<usize> {
    let mut cap = 16usize;
    while hashes.len() as f64 > cap as f64 * 0.75 {
        cap *= 2;
    }
    let mut v: Vec<(usize, u32, usize)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let spread = (*h ^ ((*h as u32) >> 16) as i32) as u32;
            (spread as usize & (cap - 1), spread, i)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, _, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_collections_keep_insertion_order() {
        assert_eq!(immutable_order(&[5, 1, 3]), vec![0, 1, 2]);
    }

    #[test]
    fn large_sets_follow_the_champ_layout() {
        // every key is placed once
        let hashes: Vec<i32> = (0..40).collect();
        let mut order = immutable_order(&hashes);
        order.sort();
        assert_eq!(order, (0..40).collect::<Vec<_>>());
        // as printed by Scala 2.13.18 for Set(0 until 40: _*)
        let scala = [
            0, 5, 10, 14, 1, 6, 9, 13, 2, 12, 18, 11, 8, 4, 15, 24, 37, 25, 20, 29, 21, 33, 28, 38,
            17, 32, 34, 22, 27, 7, 39, 3, 35, 16, 31, 26, 23, 36, 30, 19,
        ];
        assert_eq!(immutable_order(&hashes), scala);
        let keys = ["driver", "1", "2", "10", "exec-3"];
        let hs: Vec<i32> = keys.iter().map(|k| java_string_hash(k)).collect();
        let got: Vec<&str> = mutable_order(&hs).into_iter().map(|i| keys[i]).collect();
        assert_eq!(got, ["1", "2", "driver", "exec-3", "10"]);
    }
}
