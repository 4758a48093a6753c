//! A reorder buffer for logs that are mostly in time order (its user bounds how much it holds).
//!
//! Items arriving in order (the common case) queue in a ring buffer and leave in O(1), with
//! sequential memory access; only stragglers, older than something already queued, go
//! through a binary heap. The earliest item always leaves first. After one item far in the
//! future, later items are stragglers until it leaves: correct, at a heap's cost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Buffered items ordered by `K`, earliest first.
pub(super) struct ReorderBuffer<K: Ord, T> {
    in_order: VecDeque<(K, T)>,
    stragglers: BinaryHeap<Reverse<Keyed<K, T>>>,
}

/// An item ordered only by its key.
struct Keyed<K, T>(K, T);

impl<K: Ord, T> PartialEq for Keyed<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord, T> Eq for Keyed<K, T> {}
impl<K: Ord, T> PartialOrd for Keyed<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, T> Ord for Keyed<K, T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: Ord, T> Default for ReorderBuffer<K, T> {
    fn default() -> Self {
        Self {
            in_order: VecDeque::new(),
            stragglers: BinaryHeap::new(),
        }
    }
}

impl<K: Ord, T> ReorderBuffer<K, T> {
    /// Items held.
    pub(super) fn len(&self) -> usize {
        self.in_order.len() + self.stragglers.len()
    }

    /// Adds an item.
    pub(super) fn push(&mut self, key: K, item: T) {
        match self.in_order.back() {
            Some((last, _)) if key < *last => self.stragglers.push(Reverse(Keyed(key, item))),
            _ => self.in_order.push_back((key, item)),
        }
    }

    /// Takes the item with the smallest key.
    pub(super) fn pop(&mut self) -> Option<(K, T)> {
        let straggler_first = match (self.in_order.front(), self.stragglers.peek()) {
            (Some((queued, _)), Some(Reverse(straggler))) => straggler.0 < *queued,
            (None, Some(_)) => true,
            _ => false,
        };
        if straggler_first {
            self.stragglers.pop().map(|Reverse(Keyed(k, t))| (k, t))
        } else {
            self.in_order.pop_front()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut buffer: ReorderBuffer<(i64, u64), u64>) -> Vec<u64> {
        std::iter::from_fn(|| buffer.pop().map(|(_, row)| row)).collect()
    }

    #[test]
    fn releases_in_key_order_whatever_the_arrival_order() {
        let times = [5, 3, 9, 9, 1, 7, 3, 12, 11, 2];
        let mut buffer = ReorderBuffer::default();
        for (row, at) in times.into_iter().enumerate() {
            buffer.push((at, row as u64), row as u64);
        }
        assert_eq!(buffer.len(), times.len());
        let mut expected: Vec<(i64, u64)> = times
            .iter()
            .enumerate()
            .map(|(r, &t)| (t, r as u64))
            .collect();
        expected.sort();
        let expected: Vec<u64> = expected.into_iter().map(|(_, r)| r).collect();
        assert_eq!(drain(buffer), expected);
    }

    #[test]
    fn interleaves_pushes_and_pops_like_a_heap() {
        let mut buffer = ReorderBuffer::default();
        let mut heap = BinaryHeap::new();
        let mut state = 17u64;
        for row in 0..5_000u64 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            // Mostly increasing times with occasional late arrivals.
            let at = row as i64
                - if state >> 60 == 0 {
                    (state >> 40) as i64 % 50
                } else {
                    0
                };
            buffer.push((at, row), row);
            heap.push(Reverse((at, row)));
            if row % 3 == 0 {
                let Reverse((_, expected)) = heap.pop().unwrap();
                assert_eq!(buffer.pop().map(|(_, r)| r), Some(expected));
            }
        }
        let rest: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse((_, r))| r)).collect();
        assert_eq!(drain(buffer), rest);
    }
}
