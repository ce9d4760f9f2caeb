//! Stored JSON documents parsed once per process.
//!
//! A run's summary (its drift references: ~180 KB for eight features) and an audit's report
//! (~70 KB) are read by every view of the pages that show them; parsing them was a third of
//! those views' CPU. They are written once and read many times, so each process keeps the
//! few it parsed last, keyed by the stored text itself (its length and a hash seeded per
//! process): a rewritten document has other bytes and is parsed afresh, and the parsed value
//! is a function of the text alone, whichever database it came from.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex};

use serde::de::DeserializeOwned;

/// How many documents of one kind a process keeps; beyond it the kept ones are dropped.
const KEPT: usize = 16;

pub struct Parsed<T> {
    kept: Mutex<HashMap<(usize, u64), Arc<T>>>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            kept: Mutex::new(HashMap::new()),
        }
    }
}

static SEED: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

impl<T: DeserializeOwned> Parsed<T> {
    /// `text` parsed, from the kept copy when this process parsed the same text before.
    pub fn of(&self, text: &str) -> Result<Arc<T>, serde_json::Error> {
        let key = (text.len(), SEED.hash_one(text));
        if let Some(parsed) = self.kept.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(parsed);
        }
        let parsed = Arc::new(serde_json::from_str::<T>(text)?);
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= KEPT {
                kept.clear();
            }
            kept.insert(key, parsed.clone());
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_parsed_once_and_other_text_afresh() {
        let parsed: Parsed<Vec<u32>> = Parsed::default();
        let a = parsed.of("[1,2,3]").unwrap();
        assert!(Arc::ptr_eq(&a, &parsed.of("[1,2,3]").unwrap()));
        // Same length, other bytes: a rewritten document is never served from the old copy.
        assert_eq!(*parsed.of("[1,2,4]").unwrap(), vec![1, 2, 4]);
        assert!(parsed.of("[1,2,").is_err());
    }

    #[test]
    fn a_full_cache_starts_again_rather_than_growing() {
        let parsed: Parsed<u32> = Parsed::default();
        for n in 0..(KEPT as u32 * 3) {
            assert_eq!(*parsed.of(&n.to_string()).unwrap(), n);
        }
        assert!(parsed.kept.lock().unwrap().len() <= KEPT);
    }
}
