//! The population KPIs are computed over: every customer on file, mapped to dense indices,
//! with the live members of the published run assigned to their segments.

use std::collections::HashMap;

use super::{KpiError, Segmentation};

/// Every customer on file by dense index, and the segmentation the evaluator sees.
pub struct Population {
    ids: Vec<i64>,
    /// `lookup[id - base]` is the dense index of customer `id` when ids are dense enough.
    lookup: Option<(i64, Vec<u32>)>,
    segmentation: Segmentation,
    run_id: Option<i64>,
    /// The evaluator's (unique) segment name -> the segment's number in the run.
    numbers: HashMap<String, i32>,
}

impl Population {
    /// Every customer in `ids` (ascending), none in a segment.
    pub fn new(ids: Vec<i64>) -> Population {
        let n = ids.len();
        let lookup = match (ids.first(), ids.last()) {
            (Some(&lo), Some(&hi)) if ((hi - lo) as u64) < 4 * n as u64 + 1_000_000 => {
                let mut lookup = vec![u32::MAX; (hi - lo + 1) as usize];
                for (i, &id) in ids.iter().enumerate() {
                    lookup[(id - lo) as usize] = i as u32;
                }
                Some((lo, lookup))
            }
            _ => None,
        };
        Population {
            ids,
            lookup,
            segmentation: Segmentation::population_only(n as u32),
            run_id: None,
            numbers: HashMap::new(),
        }
    }

    /// Assigns the members of run `run_id` whose consent is active to its segments: `named`
    /// are the run's segments as (number, unique name) in segment order, `members` the run's
    /// (customer, segment number) by customer, `consented` the customers (ascending) whose
    /// consent for the segmentation purpose is active.
    pub fn assign(
        &mut self,
        run_id: i64,
        named: Vec<(i32, String)>,
        members: &[(i64, i32)],
        consented: &[i64],
    ) -> Result<(), KpiError> {
        let position: HashMap<i32, u32> = named
            .iter()
            .enumerate()
            .map(|(i, (number, _))| (*number, i as u32))
            .collect();
        let mut assignment = vec![None; self.ids.len()];
        let mut j = 0;
        for &(customer, segment) in members {
            while j < consented.len() && consented[j] < customer {
                j += 1;
            }
            if j < consented.len()
                && consented[j] == customer
                && let (Some(i), Some(&s)) = (self.index_of(customer), position.get(&segment))
            {
                assignment[i as usize] = Some(s);
            }
        }
        self.numbers = named.iter().map(|(n, name)| (name.clone(), *n)).collect();
        self.segmentation = Segmentation::new(
            named.into_iter().map(|(_, name)| name).collect(),
            &assignment,
        )?;
        self.run_id = Some(run_id);
        Ok(())
    }

    /// The dense index of customer `id`.
    pub fn index_of(&self, id: i64) -> Option<u32> {
        match &self.lookup {
            Some((base, lookup)) => {
                let i = usize::try_from(id - base).ok()?;
                lookup.get(i).copied().filter(|&x| x != u32::MAX)
            }
            None => self.ids.binary_search(&id).ok().map(|i| i as u32),
        }
    }

    /// How many customers are on file.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nobody is on file.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn segmentation(&self) -> &Segmentation {
        &self.segmentation
    }

    /// The run whose segments are assigned.
    pub fn run_id(&self) -> Option<i64> {
        self.run_id
    }

    /// The segment's number in the run, by the evaluator's name for it.
    pub fn number_of(&self, name: &str) -> Option<i32> {
        self.numbers.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_consented_members_are_assigned() {
        for ids in [vec![3, 5, 8], vec![3, 5, 8_000_000_000]] {
            let mut p = Population::new(ids);
            assert_eq!(p.index_of(5), Some(1));
            assert_eq!(p.index_of(4), None);
            p.assign(
                7,
                vec![(0, "A".into()), (2, "B".into())],
                &[(3, 0), (5, 2), (8, 2)],
                &[3, 5],
            )
            .unwrap();
            assert_eq!(p.run_id(), Some(7));
            assert_eq!(p.number_of("B"), Some(2));
            assert_eq!(p.segmentation().names(), ["A", "B"]);
        }
    }
}
