//! OOM loops: a domain that keeps killing without getting its memory back.
//!
//! A loop starts at a kill in a domain whose previous kill, within [`LOOP_WINDOW_NS`], did
//! not recover it, or at the [`LOOP_KILLS`]th kill in the domain within that window. It
//! ends when a kill there recovers the domain, or when the window passes with no kill. Each
//! start and each end is one [`Change::OomLoop`], so a loop is counted once.
use std::collections::{BTreeMap, VecDeque};

use super::{Change, Tracker, VictimId, recovery::Verdict};

/// How close kills must come to be one loop.
pub const LOOP_WINDOW_NS: u64 = 60_000_000_000;

/// Kills within the window that make a loop even before any verdict.
pub const LOOP_KILLS: usize = 3;

/// Kills kept per loop (the count goes on).
const LOOP_KILLS_KEPT: usize = 64;

/// Ended loops kept for [`Tracker::oom_loop`] and [`Tracker::in_oom_loop`].
const ENDED_LOOPS_KEPT: usize = 64;

/// Domains followed at once; the quietest is forgotten beyond it.
const DOMAINS_KEPT: usize = 4096;

/// An OOM domain: a memory cgroup's kernel id, or `None` for the machine.
pub type DomainKey = Option<u64>;

/// A loop in one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomLoop {
    pub domain: DomainKey,
    pub started_ns: u64,
    /// Its kills, oldest first (the first [`LOOP_KILLS_KEPT`]), and how many there were.
    pub kills: Vec<VictimId>,
    pub kill_count: u64,
    /// The cause of the latest verdict that did not recover, if any.
    pub cause: Option<&'static str>,
    /// When it ended: the recovering kill's verdict, or the quiet window's end.
    pub ended_ns: Option<u64>,
    /// It ended because a kill recovered the domain (else: no kill for the window).
    pub recovered: bool,
}

/// What the tracker remembers of a domain's recent kills.
#[derive(Debug, Default)]
pub(super) struct DomainKills {
    /// Kills within the window, oldest first: (victim, kill time).
    recent: VecDeque<(VictimId, u64)>,
    /// The latest kill, and whether its verdict did not recover the domain.
    last_not_recovered: Option<(u64, &'static str)>,
    active: Option<OomLoop>,
}

/// Every domain's kills, by domain.
pub(super) type Domains = BTreeMap<DomainKey, DomainKills>;

impl Tracker {
    /// A kill in `domain` at `at_ns`: may start a loop, or extend one.
    pub(super) fn loop_on_kill(
        &mut self,
        id: VictimId,
        domain: DomainKey,
        at_ns: u64,
        changes: &mut Vec<Change>,
    ) {
        if !self.domains.contains_key(&domain) && self.domains.len() >= DOMAINS_KEPT {
            let quietest = self
                .domains
                .iter()
                .filter(|(_, d)| d.active.is_none())
                .min_by_key(|(_, d)| d.recent.back().map(|r| r.1))
                .map(|(k, _)| *k);
            if let Some(key) = quietest {
                self.domains.remove(&key);
            }
        }
        let d = self.domains.entry(domain).or_default();
        while d
            .recent
            .front()
            .is_some_and(|(_, t)| at_ns.saturating_sub(*t) > LOOP_WINDOW_NS)
        {
            d.recent.pop_front();
        }
        d.recent.push_back((id, at_ns));
        if let Some(active) = d.active.as_mut() {
            active.kill_count += 1;
            if active.kills.len() < LOOP_KILLS_KEPT {
                active.kills.push(id);
            }
            return;
        }
        let after_failure = d
            .last_not_recovered
            .filter(|(t, _)| at_ns.saturating_sub(*t) <= LOOP_WINDOW_NS);
        if after_failure.is_none() && d.recent.len() < LOOP_KILLS {
            return;
        }
        let kills: Vec<VictimId> = d.recent.iter().map(|(v, _)| *v).collect();
        d.active = Some(OomLoop {
            domain,
            started_ns: at_ns,
            kill_count: kills.len() as u64,
            kills,
            cause: after_failure.map(|(_, cause)| cause),
            ended_ns: None,
            recovered: false,
        });
        self.totals.oom_loops += 1;
        changes.push(Change::OomLoop {
            domain,
            started: true,
        });
    }

    /// Victim `id`'s verdict: a recovered domain ends its loop; one that did not names the
    /// loop's cause (and may start one at the next kill).
    pub(super) fn loop_on_recovery(&mut self, id: VictimId, changes: &mut Vec<Change>) {
        let Some(v) = self.victim(id) else { return };
        let (Some(domain), Some(killed_at), Some(recovery)) =
            (v.oom_domain(), v.killed_at_ns(), v.recovery.as_ref())
        else {
            return;
        };
        let key = domain.memcg.map(|m| m.id);
        let judged_at = killed_at.saturating_add(recovery.took_ns.unwrap_or(0));
        let verdict = recovery.verdict.clone();
        let Some(d) = self.domains.get_mut(&key) else {
            return;
        };
        match verdict {
            Verdict::NotRecovered(cause) => {
                d.last_not_recovered = Some((killed_at, cause.name()));
                if let Some(active) = d.active.as_mut() {
                    active.cause = Some(cause.name());
                }
            }
            Verdict::Recovered => {
                d.last_not_recovered = None;
                // Only a kill of the loop ends it: an older one's verdict is not news.
                if let Some(mut ended) = d.active.take_if(|a| killed_at >= a.started_ns) {
                    ended.ended_ns = Some(judged_at);
                    ended.recovered = true;
                    self.ended_loops.push_back(ended);
                    changes.push(Change::OomLoop {
                        domain: key,
                        started: false,
                    });
                }
            }
            Verdict::Unknown(_) => {}
        }
        self.trim_ended_loops();
    }

    /// Ends loops with no kill for the window; `now_ns` is CLOCK_MONOTONIC.
    pub(super) fn end_quiet_loops(&mut self, now_ns: u64, changes: &mut Vec<Change>) {
        let mut ended = Vec::new();
        for (key, d) in &mut self.domains {
            let last = d.recent.back().map(|r| r.1);
            if let Some(last) = last.filter(|t| now_ns.saturating_sub(*t) > LOOP_WINDOW_NS)
                && let Some(mut quiet) = d.active.take()
            {
                quiet.ended_ns = Some(last.saturating_add(LOOP_WINDOW_NS));
                ended.push(quiet);
                changes.push(Change::OomLoop {
                    domain: *key,
                    started: false,
                });
            }
        }
        self.ended_loops.extend(ended);
        self.trim_ended_loops();
    }

    /// When the first active loop ends if no kill comes.
    pub(super) fn next_loop_deadline(&self) -> Option<u64> {
        self.domains
            .values()
            .filter(|d| d.active.is_some())
            .filter_map(|d| d.recent.back().map(|r| r.1 + LOOP_WINDOW_NS + 1))
            .min()
    }

    fn trim_ended_loops(&mut self) {
        while self.ended_loops.len() > ENDED_LOOPS_KEPT {
            self.ended_loops.pop_front();
        }
    }

    /// Loops going on now, by domain.
    pub fn active_loops(&self) -> impl Iterator<Item = &OomLoop> {
        self.domains.values().filter_map(|d| d.active.as_ref())
    }

    /// Returns true if and only if victim `id`'s kill was one of a loop's (going on, or among
    /// the ended ones kept).
    pub fn in_oom_loop(&self, id: VictimId) -> bool {
        self.active_loops()
            .chain(self.ended_loops.iter())
            .any(|l| l.kills.contains(&id))
    }

    /// The loop in `domain`, going on or the latest ended.
    pub fn oom_loop(&self, domain: DomainKey) -> Option<&OomLoop> {
        self.domains
            .get(&domain)
            .and_then(|d| d.active.as_ref())
            .or_else(|| self.ended_loops.iter().rev().find(|l| l.domain == domain))
    }
}
