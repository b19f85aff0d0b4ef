//! The real work a program does under the allocator: a `BTreeMap` of a million entries
//! built, queried and half emptied, and a large JSON document written, parsed into a
//! `serde_json::Value` tree and sorted. Every answer is checked against one computed
//! without the data structure, so a wrong byte anywhere in the allocator shows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The sizes of the work, and the seed of its keys.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Entries put in the map.
    pub map_entries: u64,
    /// Records in the JSON document.
    pub json_records: u64,
    /// Seed of the keys and scores.
    pub seed: u64,
}

impl Workload {
    /// The full workload: a million map entries, 200 000 JSON records.
    pub const FULL: Workload = Workload {
        map_entries: 1_000_000,
        json_records: 200_000,
        seed: 0x006b_6d65_6d6c_6162,
    };
}

/// What the work found; equal to [`Workload::expected`] when every allocation held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Keys found again after building the map.
    pub map_hits: u64,
    /// Entries left after removing every odd-numbered one.
    pub map_len_after_removal: u64,
    /// Sum of the values left.
    pub map_value_sum: u64,
    /// Entries left whose key is in the lowest quarter of the key space.
    pub map_low_quarter: u64,
    /// Bytes of the JSON document.
    pub json_bytes: u64,
    /// Records parsed back.
    pub json_records: u64,
    /// The ids of the ten best-scored records (score descending, then id ascending).
    pub json_top_ids: Vec<u64>,
    /// Whether the sorted array is in order throughout.
    pub json_sorted: bool,
}

/// SplitMix64 (a bijection of its input, so distinct `i` give distinct keys).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Workload {
    fn key(&self, i: u64) -> u64 {
        splitmix64(self.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn score(&self, id: u64) -> u64 {
        splitmix64(self.seed.rotate_left(17) ^ id) % 1_000_000
    }

    /// Run the work.
    pub fn run(&self) -> Outcome {
        let mut out = Outcome::default();
        self.run_map(&mut out);
        self.run_json(&mut out);
        out
    }

    fn run_map(&self, out: &mut Outcome) {
        let mut map = BTreeMap::new();
        for i in 0..self.map_entries {
            map.insert(self.key(i), i);
        }
        out.map_hits = (0..self.map_entries)
            .filter(|&i| map.get(&self.key(i)) == Some(&i))
            .count() as u64;
        for i in (1..self.map_entries).step_by(2) {
            map.remove(&self.key(i));
        }
        out.map_len_after_removal = map.len() as u64;
        out.map_value_sum = map.values().sum();
        out.map_low_quarter = map.range(..u64::MAX / 4).count() as u64;
    }

    fn document(&self) -> String {
        let records: Vec<Value> = (0..self.json_records)
            .map(|id| {
                json!({
                    "id": id,
                    "name": format!("user-{:08x}", self.key(id) as u32),
                    "score": self.score(id),
                    "tags": ["kmalloc", "slub", format!("t{}", id % 7)],
                })
            })
            .collect();
        serde_json::to_string(&Value::Array(records)).unwrap_or_default()
    }

    fn run_json(&self, out: &mut Outcome) {
        let text = self.document();
        out.json_bytes = text.len() as u64;
        let mut parsed: Vec<Value> = match serde_json::from_str(&text) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        drop(text);
        let rank = |v: &Value| {
            (
                u64::MAX - v["score"].as_u64().unwrap_or(0),
                v["id"].as_u64().unwrap_or(u64::MAX),
            )
        };
        parsed.sort_by_key(rank);
        out.json_records = parsed.len() as u64;
        out.json_sorted = parsed.windows(2).all(|w| rank(&w[0]) <= rank(&w[1]));
        out.json_top_ids = parsed
            .iter()
            .take(10)
            .filter_map(|v| v["id"].as_u64())
            .collect();
    }

    /// The outcome computed without the map or the document: from the key and score
    /// functions alone.
    pub fn expected(&self) -> Outcome {
        let n = self.map_entries;
        let kept = (0..n).step_by(2);
        let mut best: Vec<(u64, u64)> = (0..self.json_records)
            .map(|id| (u64::MAX - self.score(id), id))
            .collect();
        best.sort_unstable();
        Outcome {
            map_hits: n,
            map_len_after_removal: n.div_ceil(2),
            map_value_sum: kept.clone().sum(),
            map_low_quarter: kept.filter(|&i| self.key(i) < u64::MAX / 4).count() as u64,
            json_bytes: 0,
            json_records: self.json_records,
            json_top_ids: best.iter().take(10).map(|&(_, id)| id).collect(),
            json_sorted: true,
        }
    }

    /// Does `out` agree with [`Workload::expected`] (the document's size aside)?
    pub fn check(&self, out: &Outcome) -> bool {
        let expected = Outcome {
            json_bytes: out.json_bytes,
            ..self.expected()
        };
        *out == expected && out.json_bytes > 0
    }
}
