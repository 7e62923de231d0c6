//! A sorted interval partition of one address family: address to candidate rule positions.
//!
//! The address space is cut at every range start and end into segments. Each segment stores
//! the ascending positions (in priority order) of the rules whose ranges cover it, so a lookup
//! is one binary search. A segment's list stops after the first rule without header filters:
//! that rule always applies, so no later position can decide. Segments with equal lists share
//! one copy, which keeps a table-backed tag such as `AzureCloud` (thousands of prefixes) from
//! storing its rule list once per prefix.

use std::collections::{BTreeMap, HashMap};

/// An unsigned address (`u32` for IPv4, `u128` for IPv6).
pub(crate) trait AddressKey: Copy + Ord {
    const ZERO: Self;
    fn successor(self) -> Option<Self>;
}

impl AddressKey for u32 {
    const ZERO: Self = 0;
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl AddressKey for u128 {
    const ZERO: Self = 0;
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// One inclusive address range of the rule at `position`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Interval<K> {
    pub first: K,
    pub last: K,
    pub position: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct IntervalIndex<K> {
    /// First address of each segment; `starts[0]` is zero.
    starts: Vec<K>,
    /// Segment `i` reads `positions[spans[i].0..spans[i].1]`.
    spans: Vec<(usize, usize)>,
    positions: Vec<u32>,
}

impl<K: AddressKey> IntervalIndex<K> {
    /// Builds the partition. `always_applies(position)` is true for rules without header
    /// filters, where a segment's list may stop.
    pub fn build(
        intervals: &[Interval<K>],
        always_applies: impl Fn(u32) -> bool,
    ) -> IntervalIndex<K> {
        // Sweep events: +1 at the first address, -1 just after the last one.
        let mut events: Vec<(K, bool, u32)> = Vec::with_capacity(intervals.len() * 2);
        for interval in intervals {
            events.push((interval.first, true, interval.position));
            if let Some(after) = interval.last.successor() {
                events.push((after, false, interval.position));
            }
        }
        events.sort_unstable_by_key(|event| event.0);

        let mut index = IntervalIndex {
            starts: Vec::new(),
            spans: Vec::new(),
            positions: Vec::new(),
        };
        let mut stored: HashMap<Vec<u32>, (usize, usize)> = HashMap::new();

        // Position -> number of its ranges covering the current segment (ranges of one rule
        // may overlap).
        let mut active: BTreeMap<u32, usize> = BTreeMap::new();
        let mut segment: Vec<u32> = Vec::new();
        let mut next = 0;
        let mut point = K::ZERO;

        loop {
            while let Some(&(at, is_start, position)) = events.get(next) {
                if at != point {
                    break;
                }
                if is_start {
                    *active.entry(position).or_insert(0) += 1;
                } else if let Some(count) = active.get_mut(&position) {
                    *count -= 1;
                    if *count == 0 {
                        active.remove(&position);
                    }
                }
                next += 1;
            }

            segment.clear();
            for &position in active.keys() {
                segment.push(position);
                if always_applies(position) {
                    break;
                }
            }
            index.push_segment(point, &segment, &mut stored);

            match events.get(next) {
                Some(&(at, _, _)) => point = at,
                None => break,
            }
        }

        index
    }

    /// Candidate positions for `address`, ascending.
    pub fn lookup(&self, address: K) -> &[u32] {
        let after = self.starts.partition_point(|start| *start <= address);
        let Some(segment) = after.checked_sub(1) else {
            return &[];
        };
        match self.spans.get(segment) {
            Some(&(from, to)) => self.positions.get(from..to).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Number of segments, for tests.
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.starts.len()
    }

    /// Appends a segment unless it repeats the previous one, in which case the previous
    /// segment simply extends over it. A list seen before is shared instead of copied.
    fn push_segment(
        &mut self,
        start: K,
        positions: &[u32],
        stored: &mut HashMap<Vec<u32>, (usize, usize)>,
    ) {
        let previous = self
            .spans
            .last()
            .and_then(|&(from, to)| self.positions.get(from..to));
        if previous == Some(positions) {
            return;
        }

        let span = match stored.get(positions) {
            Some(&span) => span,
            None => {
                let from = self.positions.len();
                self.positions.extend_from_slice(positions);
                let span = (from, self.positions.len());
                stored.insert(positions.to_vec(), span);
                span
            }
        };
        self.starts.push(start);
        self.spans.push(span);
    }

    /// Number of stored positions, for tests.
    #[cfg(test)]
    pub fn stored_positions(&self) -> usize {
        self.positions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(first: u32, last: u32, position: u32) -> Interval<u32> {
        Interval {
            first,
            last,
            position,
        }
    }

    #[test]
    fn lookup_overlapping() {
        let index = IntervalIndex::build(
            &[
                interval(10, 19, 2),
                interval(15, 30, 0),
                interval(0, u32::MAX, 5),
            ],
            |_| false,
        );
        assert_eq!(index.lookup(0), &[5]);
        assert_eq!(index.lookup(12), &[2, 5]);
        assert_eq!(index.lookup(15), &[0, 2, 5]);
        assert_eq!(index.lookup(20), &[0, 5]);
        assert_eq!(index.lookup(31), &[5]);
        assert_eq!(index.lookup(u32::MAX), &[5]);
    }

    #[test]
    fn lookup_stops_after_headerless() {
        let index = IntervalIndex::build(&[interval(0, 100, 1), interval(0, 100, 3)], |p| p == 1);
        assert_eq!(index.lookup(50), &[1]);
    }

    #[test]
    fn lookup_empty_index() {
        let index: IntervalIndex<u32> = IntervalIndex::build(&[], |_| false);
        assert_eq!(index.lookup(7), &[] as &[u32]);
    }

    #[test]
    fn same_rule_overlapping_ranges() {
        let index = IntervalIndex::build(&[interval(0, 10, 4), interval(5, 20, 4)], |_| false);
        assert_eq!(index.lookup(7), &[4]);
        assert_eq!(index.lookup(15), &[4]);
        assert_eq!(index.lookup(21), &[] as &[u32]);
    }

    #[test]
    fn shares_equal_lists() {
        let index = IntervalIndex::build(
            &[
                interval(0, 10, 1),
                interval(0, 10, 2),
                interval(20, 30, 1),
                interval(20, 30, 2),
            ],
            |_| false,
        );
        assert_eq!(index.lookup(25), &[1, 2]);
        assert_eq!(index.lookup(15), &[] as &[u32]);
        assert_eq!(index.stored_positions(), 2);
    }

    #[test]
    fn merges_equal_neighbours() {
        let index = IntervalIndex::build(&[interval(0, 10, 4), interval(11, 20, 4)], |_| false);
        assert_eq!(index.segments(), 2);
    }
}
