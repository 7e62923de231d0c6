//! A sorted interval partition of one address family: address to candidate rule positions.
//!
//! The address space is cut at every range start and end into segments. Each segment stores
//! the ascending positions (in priority order) of the rules whose ranges cover it, so a lookup
//! is one search for the segment. A segment's list stops after the first rule without header
//! filters: that rule always applies, so no later position can decide. Segments with equal
//! lists share one copy, which keeps a table-backed tag such as `AzureCloud` (thousands of
//! prefixes) from storing its rule list once per prefix.
//!
//! A bucket table in front of the segment starts narrows the search to the few segments of
//! one bucket. With ranges spread evenly, a lookup then costs about the same with 3 segments
//! or thousands. With clustered ranges, it costs at most one binary search over all starts.

use std::collections::{BTreeMap, HashMap};

/// An unsigned address (`u32` for IPv4, `u128` for IPv6).
pub(crate) trait AddressKey: Copy + Ord {
    const ZERO: Self;
    fn successor(self) -> Option<Self>;
    /// Returns the number of significant bits of `self - base`, for `self >= base`.
    fn offset_bits(self, base: Self) -> u32;
    /// Returns `(self - base) >> shift` as an index, for `self >= base`, saturating at
    /// `usize::MAX`.
    fn bucket(self, base: Self, shift: u32) -> usize;
    /// Returns `base + (bucket << shift)`, the first address of a bucket, or `None` past the
    /// end of the address space.
    fn bucket_start(base: Self, bucket: usize, shift: u32) -> Option<Self>;
}

macro_rules! impl_address_key {
    ($key:ty) => {
        impl AddressKey for $key {
            const ZERO: Self = 0;

            fn successor(self) -> Option<Self> {
                self.checked_add(1)
            }

            fn offset_bits(self, base: Self) -> u32 {
                <$key>::BITS - self.wrapping_sub(base).leading_zeros()
            }

            fn bucket(self, base: Self, shift: u32) -> usize {
                let offset = self.wrapping_sub(base).checked_shr(shift).unwrap_or(0);
                usize::try_from(offset).unwrap_or(usize::MAX)
            }

            fn bucket_start(base: Self, bucket: usize, shift: u32) -> Option<Self> {
                let size = <$key>::checked_shl(1, shift)?;
                <$key>::try_from(bucket)
                    .ok()?
                    .checked_mul(size)?
                    .checked_add(base)
            }
        }
    };
}

impl_address_key!(u32);
impl_address_key!(u128);

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
    /// `None` below [`MIN_BUCKETED_SEGMENTS`] segments.
    buckets: Option<Buckets<K>>,
}

/// Segment count from which a lookup goes through [`Buckets`]. Below it, the binary search
/// takes at most three steps.
const MIN_BUCKETED_SEGMENTS: usize = 8;

/// The addresses from the second segment start (`base`) up to the last one (`top`), cut into
/// buckets of `2^shift` addresses, with about as many buckets as segments.
#[derive(Clone, Debug)]
struct Buckets<K> {
    base: K,
    top: K,
    shift: u32,
    /// The segment that contains the first address of each bucket, one entry past the bucket
    /// that contains `top`, so that every bucket below `top` has a next entry.
    first_segments: Vec<u32>,
}

impl<K: AddressKey> Buckets<K> {
    fn build(starts: &[K]) -> Option<Buckets<K>> {
        // A binary search over a few starts costs less than the bucket arithmetic.
        if starts.len() < MIN_BUCKETED_SEGMENTS {
            return None;
        }
        let (&base, &top) = (starts.get(1)?, starts.last()?);
        let last_segment = u32::try_from(starts.len() - 1).ok()?;

        let span_bits = top.offset_bits(base);
        let bucket_bits = usize::BITS - (starts.len() - 1).leading_zeros();
        let shift = span_bits.saturating_sub(bucket_bits);

        let mut first_segments = Vec::new();
        let mut segment = 0;
        for bucket in 0..=top.bucket(base, shift).checked_add(1)? {
            match K::bucket_start(base, bucket, shift) {
                Some(first_address) => {
                    while starts
                        .get(segment + 1)
                        .is_some_and(|start| *start <= first_address)
                    {
                        segment += 1;
                    }
                    first_segments.push(u32::try_from(segment).ok()?);
                }
                None => first_segments.push(last_segment),
            }
        }

        Some(Buckets {
            base,
            top,
            shift,
            first_segments,
        })
    }

    /// Finds the segment that contains `address`, searching only the segments of its bucket.
    fn segment(&self, starts: &[K], address: K) -> usize {
        if address < self.base {
            return 0;
        }
        let last = starts.len().saturating_sub(1);
        if address >= self.top {
            return last;
        }

        // Below `top`, every bucket has a next entry. The segment that contains the next
        // bucket's first address is the last one that can start inside this bucket.
        let bucket = address.bucket(self.base, self.shift);
        let (first, next) = match self.first_segments.get(bucket..).unwrap_or(&[]) {
            [first, next, ..] => (*first as usize, *next as usize),
            _ => (0, last),
        };
        // The segment is the last one in `first..=next` that starts at or before `address`,
        // and `first` always does.
        let later = starts.get(first + 1..=next).unwrap_or(&[]);
        first + later.partition_point(|start| *start <= address)
    }
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
            buckets: None,
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

        index.buckets = Buckets::build(&index.starts);
        index
    }

    /// Candidate positions for `address`, ascending.
    pub fn lookup(&self, address: K) -> &[u32] {
        let segment = match &self.buckets {
            Some(buckets) => buckets.segment(&self.starts, address),
            // `starts[0]` is zero, so some segment starts at or before any address.
            None => self
                .starts
                .partition_point(|start| *start <= address)
                .saturating_sub(1),
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
    use proptest::prelude::*;

    use super::*;

    /// Treats the rules at positions ending in 3 as rules without header filters.
    fn always_applies(position: u32) -> bool {
        position % 10 == 3
    }

    /// Collects the candidates for `address` from the intervals directly, as `lookup` must
    /// return them.
    fn candidates_by_scan<K: AddressKey>(intervals: &[Interval<K>], address: K) -> Vec<u32> {
        let mut positions: Vec<u32> = intervals
            .iter()
            .filter(|interval| interval.first <= address && address <= interval.last)
            .map(|interval| interval.position)
            .collect();
        positions.sort_unstable();
        positions.dedup();
        if let Some(at) = positions.iter().position(|&p| always_applies(p)) {
            positions.truncate(at + 1);
        }
        positions
    }

    /// Lists every range end, the addresses next to it, and address zero.
    fn probes<K: AddressKey>(
        intervals: &[Interval<K>],
        predecessor: impl Fn(K) -> Option<K>,
    ) -> Vec<K> {
        let mut probes = vec![Some(K::ZERO)];
        for interval in intervals {
            probes.extend([Some(interval.first), Some(interval.last)]);
            probes.extend([predecessor(interval.first), interval.last.successor()]);
            probes.push(interval.first.successor());
        }
        probes.into_iter().flatten().collect()
    }

    /// Builds ranges of `2^bits` addresses from `first`, cut at the end of the address space.
    fn v6_ranges(raw: &[(u128, u32, u32)]) -> Vec<Interval<u128>> {
        raw.iter()
            .map(|&(first, bits, position)| Interval {
                first,
                last: first.saturating_add(u128::MAX >> (128 - bits.clamp(1, 128))),
                position,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn lookup_matches_scan_v4(
            raw in prop::collection::vec((any::<u32>(), 0u32..32, 0u32..40), 0..80),
            extra in prop::collection::vec(any::<u32>(), 0..20),
        ) {
            let intervals: Vec<Interval<u32>> = raw
                .iter()
                .map(|&(first, bits, position)| {
                    interval(first, first.saturating_add((1 << bits) - 1), position)
                })
                .collect();
            let index = IntervalIndex::build(&intervals, always_applies);
            let addresses = probes(&intervals, |a: u32| a.checked_sub(1));
            for address in addresses.into_iter().chain(extra).chain([u32::MAX]) {
                let expected = candidates_by_scan(&intervals, address);
                prop_assert_eq!(index.lookup(address), expected.as_slice(), "address {}", address);
            }
        }

        /// Ranges clustered in a few /32s, as prefixes of one provider are, so that buckets
        /// hold very different numbers of segments.
        #[test]
        fn lookup_matches_scan_v6_clustered(
            raw in prop::collection::vec((0u128..4, any::<u64>(), 1u32..80, 0u32..40), 0..80),
            extra in prop::collection::vec(any::<u128>(), 0..20),
        ) {
            let raw: Vec<(u128, u32, u32)> = raw
                .iter()
                .map(|&(cluster, offset, bits, position)| {
                    let prefix = (0x2001_0db8 + cluster * 0x1_0000) << 96;
                    (prefix | u128::from(offset) << 32, bits, position)
                })
                .collect();
            let intervals = v6_ranges(&raw);
            let index = IntervalIndex::build(&intervals, always_applies);
            let addresses = probes(&intervals, |a: u128| a.checked_sub(1));
            for address in addresses.into_iter().chain(extra).chain([u128::MAX]) {
                let expected = candidates_by_scan(&intervals, address);
                prop_assert_eq!(
                    index.lookup(address),
                    expected.as_slice(),
                    "address {:#x}",
                    address
                );
            }
        }
    }

    #[test]
    fn buckets_cover_many_ranges() {
        // 512 neighbouring /48s, as in the benchmark, and one range at the top of the space.
        let mut intervals: Vec<Interval<u128>> = (0..512u32)
            .map(|i| {
                let first = (0x2001_0db8_u128 << 96) | (u128::from(i) << 80);
                Interval {
                    first,
                    last: first | (u128::MAX >> 48),
                    position: 511 - i,
                }
            })
            .collect();
        intervals.push(Interval {
            first: u128::MAX - 7,
            last: u128::MAX,
            position: 600,
        });
        let index = IntervalIndex::build(&intervals, |_| false);
        assert!(index.buckets.is_some());

        for address in probes(&intervals, |a: u128| a.checked_sub(1)) {
            assert_eq!(
                index.lookup(address),
                candidates_by_scan(&intervals, address).as_slice(),
                "address {address:#x}"
            );
        }
    }

    #[test]
    fn few_segments_skip_buckets() {
        let index = IntervalIndex::build(&[interval(10, 20, 1)], |_| false);
        assert!(index.buckets.is_none());
        assert_eq!(index.lookup(15), &[1]);
    }

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
