//! The iteration order of Scala's immutable `Set`/`Map` and mutable `HashMap`, which
//! Spark's REST API exposes wherever it serialises such a collection (the job ids of a SQL
//! execution, the stages it scans for metric maxima, RDD distributions per executor, a
//! stage's tasks and accumulators). It differs between Scala 2.12 (Spark 3.5) and 2.13
//! (Spark 4).
//!
//! Immutable sets and maps of up to four elements keep insertion order (`Set1`..`Set4`);
//! larger ones are tries keyed by an "improved" hash, 5 bits a level from the lowest. Scala
//! 2.13's CHAMP tries iterate a node's own entries first, then its sub-nodes, each by hash
//! fragment; 2.12's hash tries iterate depth first by fragment.
//!
//! The mutable `HashMap` of 2.13 iterates its buckets (hash spread by `h ^ h >>> 16`, table
//! size a power of two, grown before an insert that would reach 3/4) in order, each bucket
//! sorted by hash. 2.12's (`HashTable`) takes a bucket from the top bits of a scrambled
//! hash, prepends to its chain, relinks chains when it grows past 3/4, and iterates from the
//! last bucket down.

/// The Scala version a History Server was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalaVersion {
    /// Spark 3.5.
    V2_12,
    /// Spark 4.
    V2_13,
}

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

/// Positions of `hashes` (given in insertion order, keys distinct) in the order an
/// immutable Scala 2.13 `Set`/`Map` with these keys iterates them.
pub fn immutable_order(hashes: &[i32]) -> Vec<usize> {
    immutable_order_of(hashes, ScalaVersion::V2_13)
}

/// Positions of `hashes` (given in insertion order, keys distinct) in the order an
/// immutable `Set`/`Map` of Scala `version` with these keys iterates them.
pub fn immutable_order_of(hashes: &[i32], version: ScalaVersion) -> Vec<usize> {
    if hashes.len() <= 4 {
        return (0..hashes.len()).collect();
    }
    let items: Vec<(u32, usize)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (improve(*h), i))
        .collect();
    match version {
        ScalaVersion::V2_13 => {
            let mut out = Vec::with_capacity(items.len());
            champ(&items, 0, &mut out);
            out
        }
        ScalaVersion::V2_12 => {
            // depth first by fragment is the order of the fragments read from the lowest;
            // equal hashes share a collision node, which keeps insertion order
            let mut v = items;
            v.sort_by_key(|(h, i)| (fragments(*h), *i));
            v.into_iter().map(|(_, i)| i).collect()
        }
    }
}

/// A hash's 5-bit fragments, lowest first: the path to it in a 2.12 hash trie.
fn fragments(h: u32) -> [u32; 7] {
    std::array::from_fn(|l| (h >> (5 * l)) & 31)
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

/// Positions of the keys put into a new Scala `mutable.HashMap` (`hashes`, one per put,
/// in order; a key put again has the same hash and counts only where it first went) in the
/// order the map iterates them. Equal hashes are taken for equal keys.
pub fn mutable_order(hashes: &[i32], version: ScalaVersion) -> Vec<usize> {
    match version {
        ScalaVersion::V2_13 => mutable_order_213(hashes),
        ScalaVersion::V2_12 => mutable_order_212(hashes),
    }
}

fn mutable_order_213(hashes: &[i32]) -> Vec<usize> {
    // `put0` grows the table (load factor 0.75, from 16) before every put, a repeated key
    // included, once the size after an insert would reach the threshold
    let mut cap = 16usize;
    let mut size = 0usize;
    let mut firsts: Vec<(u32, usize)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, h) in hashes.iter().enumerate() {
        if size + 1 >= cap * 3 / 4 {
            cap *= 2;
        }
        if seen.insert(*h) {
            size += 1;
            firsts.push(((*h ^ ((*h as u32) >> 16) as i32) as u32, i));
        }
    }
    // a bucket's chain is sorted by hash as an Int (signed), ties in insertion order
    let mut v: Vec<(usize, i32, usize)> = firsts
        .into_iter()
        .map(|(spread, i)| (spread as usize & (cap - 1), spread as i32, i))
        .collect();
    v.sort();
    v.into_iter().map(|(_, _, i)| i).collect()
}

/// `scala.util.hashing.MurmurHash3.productHash` of a `Tuple2` whose elements hash to `a`
/// and `b` (Scala 2.13: the product prefix "Tuple2" is mixed in).
pub fn tuple2_hash(a: i32, b: i32) -> i32 {
    fn mix_last(h: u32, d: u32) -> u32 {
        h ^ d
            .wrapping_mul(0xcc9e2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b873593)
    }
    fn mix(h: u32, d: u32) -> u32 {
        mix_last(h, d)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe6546b64)
    }
    let mut h = 0xcafebabe_u32;
    h = mix(h, java_string_hash("Tuple2") as u32);
    h = mix(h, a as u32);
    h = mix(h, b as u32);
    h ^= 2;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85ebca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2ae35);
    h ^= h >> 16;
    h as i32
}

/// The order Spark 4's `JsonProtocol.mapFromJson` gives a small string map (an
/// executor's log URLs, its attributes): it maps the JSON object's entries into a Scala
/// 2.13 mutable hash set of (key, value) pairs, then builds an immutable map from that set,
/// so up to four entries come out in the set's order, more in the map's hash order.
/// `pairs`: the entries in the log's order.
pub fn spark4_json_map_order(pairs: &[(&str, &str)]) -> Vec<usize> {
    if pairs.len() > 4 {
        let keys: Vec<i32> = pairs.iter().map(|(k, _)| java_string_hash(k)).collect();
        return immutable_order_of(&keys, ScalaVersion::V2_13);
    }
    let tuples: Vec<i32> = pairs
        .iter()
        .map(|(k, v)| tuple2_hash(java_string_hash(k), java_string_hash(v)))
        .collect();
    mutable_order_213(&tuples)
}

fn mutable_order_212(hashes: &[i32]) -> Vec<usize> {
    // `HashTable`: seed fixed at construction (bit count of 15), bucket from the top bits of
    // the rotated `byteswap32` hash, new entries at the head of their chain, resize (double)
    // once the size passes the threshold, relinking each old bucket from the last
    fn byteswap32(v: i32) -> i32 {
        let hc = v.wrapping_mul(0x9e3775cd_u32 as i32);
        hc.swap_bytes().wrapping_mul(0x9e3775cd_u32 as i32)
    }
    const SEED: u32 = 4;
    let index = |h: i32, len: usize| -> usize {
        let ones = (len - 1) as u32;
        let improved = (byteswap32(h) as u32).rotate_right(SEED);
        ((improved >> ones.leading_zeros()) & ones) as usize
    };
    let mut table: Vec<Vec<(i32, usize)>> = vec![Vec::new(); 16];
    let mut size = 0usize;
    for (i, h) in hashes.iter().enumerate() {
        let b = index(*h, table.len());
        if table[b].iter().any(|(k, _)| k == h) {
            continue;
        }
        // chains are kept head first
        table[b].insert(0, (*h, i));
        size += 1;
        if size > table.len() * 750 / 1000 {
            let old = std::mem::take(&mut table);
            table = vec![Vec::new(); old.len() * 2];
            for chain in old.into_iter().rev() {
                for (k, pos) in chain {
                    let nb = index(k, table.len());
                    table[nb].insert(0, (k, pos));
                }
            }
        }
    }
    table.into_iter().rev().flatten().map(|(_, i)| i).collect()
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
        let got: Vec<&str> = mutable_order(&hs, ScalaVersion::V2_13)
            .into_iter()
            .map(|i| keys[i])
            .collect();
        assert_eq!(got, ["1", "2", "driver", "exec-3", "10"]);
    }

    /// `JsonProtocol.mapFromJson` of Spark 4.3.0, run on these objects.
    #[test]
    fn spark4_reads_small_maps_in_hash_set_order() {
        assert_eq!(
            tuple2_hash(java_string_hash("a"), java_string_hash("1")),
            758116370
        );
        for (pairs, spark) in [
            (vec![("stdout", "http://127.0.0.1:43099/logPage/?appId=app-20261203092941-0000&executorId=0&logType=stdout"), ("stderr", "http://127.0.0.1:43099/logPage/?appId=app-20261203092941-0000&executorId=0&logType=stderr")], vec!["stderr", "stdout"]),
            (vec![("k955", "v19920"), ("k431", "v64089"), ("k985", "v5138")], vec!["k985", "k431", "k955"]),
            (vec![("k79", "v87584"), ("k586", "v73148")], vec!["k79", "k586"]),
            (vec![("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")], vec!["e", "f", "a", "b", "c", "d"]),
        ] {
            let got: Vec<&str> = spark4_json_map_order(&pairs)
                .into_iter()
                .map(|i| pairs[i].0)
                .collect();
            assert_eq!(got, spark);
        }
        // negative hashes sort first in their bucket (Scala 2.13.18's mutable.HashMap)
        let keys = [
            -5i64,
            3,
            -100,
            7,
            -2147483648,
            2000000000,
            -33,
            65536,
            -65536,
        ];
        let hs: Vec<i32> = keys.iter().map(|k| long_hash(*k)).collect();
        let got: Vec<i64> = mutable_order(&hs, ScalaVersion::V2_13)
            .into_iter()
            .map(|i| keys[i])
            .collect();
        assert_eq!(
            got,
            [-2147483648, -33, 65536, -100, 3, -5, 2000000000, 7, -65536]
        );
        let got: Vec<i64> = mutable_order(&hs, ScalaVersion::V2_12)
            .into_iter()
            .map(|i| keys[i])
            .collect();
        assert_eq!(
            got,
            [-100, -5, 7, 2000000000, -65536, -33, 3, 65536, -2147483648]
        );
    }

    /// Orders printed by the scala-library jars of Spark 3.5.7 (2.12.18) and 4.3.0
    /// (2.13.18) for these keys, inserted in this order, into `mutable.HashMap` and
    /// (with `updated`) an immutable `Map`.
    #[test]
    fn orders_match_both_scala_libraries() {
        let mut keys: Vec<i64> = (0..=90).step_by(3).collect();
        keys.extend([1_000_000, 77, 5_000_000_000]);
        let hashes: Vec<i32> = keys.iter().map(|k| long_hash(*k)).collect();
        let order = |o: Vec<usize>| o.into_iter().map(|i| keys[i]).collect::<Vec<_>>();
        let scala = |s: &str| -> Vec<i64> { s.split(' ').map(|x| x.parse().unwrap()).collect() };
        assert_eq!(
            order(mutable_order(&hashes, ScalaVersion::V2_12)),
            scala("77 1000000 87 60 78 69 90 45 54 63 81 72 36 27 18 9 84 21 12 3 48 57 5000000000 75 30 39 66 15 42 33 24 6 51 0")
        );
        assert_eq!(
            order(mutable_order(&hashes, ScalaVersion::V2_13)),
            scala("0 66 3 5000000000 69 6 72 9 75 12 77 78 15 1000000 81 18 84 21 87 24 90 27 30 33 36 39 42 45 48 51 54 57 60 63")
        );
        assert_eq!(
            order(immutable_order_of(&hashes, ScalaVersion::V2_12)),
            scala("69 0 42 24 57 78 84 6 60 21 33 9 77 45 27 12 54 81 39 66 5000000000 3 1000000 48 63 18 72 87 75 36 30 51 15 90")
        );
        assert_eq!(
            order(immutable_order_of(&hashes, ScalaVersion::V2_13)),
            scala("84 9 77 45 27 3 1000000 72 87 75 15 90 69 0 42 24 57 78 6 60 21 33 12 54 81 39 66 5000000000 48 63 18 36 30 51")
        );
        let names = ["driver", "1", "2", "10", "exec-3", "7", "100"];
        let hs: Vec<i32> = names.iter().map(|k| java_string_hash(k)).collect();
        let by = |v: ScalaVersion| -> Vec<&str> {
            immutable_order_of(&hs, v)
                .into_iter()
                .map(|i| names[i])
                .collect()
        };
        assert_eq!(
            by(ScalaVersion::V2_12),
            ["100", "exec-3", "10", "1", "driver", "2", "7"]
        );
        assert_eq!(
            by(ScalaVersion::V2_13),
            ["10", "1", "driver", "2", "7", "100", "exec-3"]
        );
        // 12 keys: 2.13 grows its table before the 12th insert, 2.12 after the 13th
        let twelve: Vec<i64> = (0..12).map(|k| k * 37).collect();
        let hs: Vec<i32> = twelve.iter().map(|k| long_hash(*k)).collect();
        let by = |v: ScalaVersion| -> Vec<i64> {
            mutable_order(&hs, v)
                .into_iter()
                .map(|i| twelve[i])
                .collect()
        };
        assert_eq!(
            by(ScalaVersion::V2_12),
            scala("185 370 74 259 148 333 37 222 407 111 296 0")
        );
        assert_eq!(
            by(ScalaVersion::V2_13),
            scala("0 259 37 296 74 333 111 370 148 407 185 222")
        );
    }
}
