//! The first `n` items of a stream in an order, kept in memory bounded by `n`: how a list
//! "newest first, at most `limit`" is read from a table in another order without holding the
//! whole table.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Display;

struct Ranked<K, T>(K, T);

impl<K: Ord, T> PartialEq for Ranked<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord, T> Eq for Ranked<K, T> {}
impl<K: Ord, T> PartialOrd for Ranked<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, T> Ord for Ranked<K, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// The `n` items with the smallest keys seen so far.
pub(crate) struct Top<K, T> {
    n: usize,
    // A max-heap: its top is the largest key kept, the first to go.
    heap: BinaryHeap<Ranked<K, T>>,
}

impl<K: Ord, T> Top<K, T> {
    /// Keeps at most `n` items.
    pub(crate) fn new(n: usize) -> Self {
        Top {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024)),
        }
    }

    /// Offers an item ranked by `key`.
    pub(crate) fn offer(&mut self, key: K, item: T) {
        if self.heap.len() < self.n {
            self.heap.push(Ranked(key, item));
        } else if self.heap.peek().is_some_and(|top| key < top.0) {
            self.heap.pop();
            self.heap.push(Ranked(key, item));
        }
    }

    /// The items kept, smallest key first.
    pub(crate) fn into_sorted(self) -> Vec<T> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.1)
            .collect()
    }
}

/// The first `n` of `items` for a message, joined with `, `, and `, …` when there are more.
pub(crate) fn first_few<T: Display>(items: &[T], n: usize) -> String {
    let mut text = items
        .iter()
        .take(n)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > n {
        text.push_str(", …");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::Top;

    #[test]
    fn keeps_the_smallest_n_in_order() {
        let mut t = Top::new(3);
        for x in [5, 1, 9, 3, 7, 2, 8] {
            t.offer(x, x * 10);
        }
        assert_eq!(t.into_sorted(), vec![10, 20, 30]);
        let mut none = Top::new(0);
        none.offer(1, ());
        assert!(none.into_sorted().is_empty());
    }
}
