//! The tracker: folds decoded events into victim lifecycles.
//!
//! Pure and deterministic: it never touches the kernel, the clock or the terminal, so front
//! ends (trace, top, exporter, run report) only read it, and tests drive it with recorded event
//! streams.

mod victim;

use std::collections::VecDeque;

pub use victim::{Victim, VictimId};

use crate::wire::{Event, MarkVictim};

/// How many victims are kept by default before the oldest are forgotten.
pub const DEFAULT_VICTIM_CAPACITY: usize = 10_000;

/// What an event changed, for front ends that react to changes rather than redraw.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The OOM killer chose a new victim.
    VictimMarked(VictimId),
}

/// Counts over the whole session, which eviction never lowers.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub victims: u64,
}

/// All victims seen, newest last.
#[derive(Debug)]
pub struct Tracker {
    victims: VecDeque<Victim>,
    capacity: usize,
    next_id: u64,
    totals: Totals,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_VICTIM_CAPACITY)
    }
}

impl Tracker {
    /// A tracker that remembers at most `capacity` victims (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            victims: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 1,
            totals: Totals::default(),
        }
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &Event) -> Option<Change> {
        self.totals.events += 1;
        match event {
            Event::MarkVictim(e) => Some(self.mark_victim(e)),
        }
    }

    /// The victim with this id, unless it was evicted.
    pub fn victim(&self, id: VictimId) -> Option<&Victim> {
        // Ids grow with position, so a binary search finds it.
        let index = self.victims.binary_search_by_key(&id, |v| v.id).ok()?;
        self.victims.get(index)
    }

    /// Victims still remembered, oldest first.
    pub fn victims(&self) -> impl DoubleEndedIterator<Item = &Victim> {
        self.victims.iter()
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    fn mark_victim(&mut self, e: &MarkVictim) -> Change {
        let id = VictimId(self.next_id);
        self.next_id += 1;
        self.totals.victims += 1;
        if self.victims.len() == self.capacity {
            self.victims.pop_front();
        }
        self.victims.push_back(Victim::marked(id, e));
        Change::VictimMarked(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        testing::mark_victim_raw,
        wire::{decode, encode},
    };

    fn stream(pids: &[u32]) -> Vec<Event> {
        pids.iter()
            .map(|&pid| decode(&encode(&mark_victim_raw(pid, "hog", 1024))).unwrap())
            .collect()
    }

    #[test]
    fn each_mark_victim_is_a_new_victim() {
        let mut tracker = Tracker::default();
        let changes: Vec<_> = stream(&[10, 11]).iter().map(|e| tracker.apply(e)).collect();
        assert_eq!(
            changes,
            [
                Some(Change::VictimMarked(VictimId(1))),
                Some(Change::VictimMarked(VictimId(2)))
            ]
        );
        let victim = tracker.victim(VictimId(2)).unwrap();
        assert_eq!((victim.pid, victim.comm.as_deref()), (11, Some("hog")));
        assert_eq!(victim.memory_at_kill.unwrap().anon_rss_kib, 1024);
        assert_eq!(
            tracker.totals(),
            Totals {
                events: 2,
                victims: 2
            }
        );
    }

    #[test]
    fn the_oldest_victims_are_evicted_but_still_counted() {
        let mut tracker = Tracker::with_capacity(2);
        for event in stream(&[1, 2, 3]) {
            tracker.apply(&event);
        }
        let pids: Vec<u32> = tracker.victims().map(|v| v.pid).collect();
        assert_eq!(pids, [2, 3]);
        assert!(tracker.victim(VictimId(1)).is_none());
        assert_eq!(tracker.totals().victims, 3);
    }

    #[test]
    fn same_stream_same_state() {
        let events = stream(&[5, 6, 7]);
        let run = || {
            let mut tracker = Tracker::default();
            events.iter().for_each(|e| {
                tracker.apply(e);
            });
            tracker.victims().cloned().collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
