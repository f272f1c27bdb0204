//! Why this victim: the OOM killer's candidates in the victim's OOM domain, weighed as
//! `oom_badness` weighs them, best first.
//!
//! User space reads the domain's processes right after the kill (their RSS, swap, page tables
//! and `oom_score_adj` from /proc) and hands them in ([`Tracker::candidates_read`]); the
//! points, the order, the victim's rank and why some were passed over are worked out here, a
//! pure function of what was recorded, so a replay shows what the live run showed. The
//! processes are as they were a moment after the kill, not as the OOM killer saw them:
//! `exact` is false. Where a function hook follows `oom_badness`, the OOM killer's own
//! evaluation arrives just before the kill instead ([`from_evaluation`]): `exact` is true and
//! /proc is not read.
use super::{Tracker, Victim, VictimId};
use crate::wire::{OomCandidate, OomCandidates, has_mmf_oom_skip};

/// Candidates listed at most; the rest are counted.
pub const LISTED: usize = 8;

/// `oom_score_adj` at which a process is never killed.
const OOM_SCORE_ADJ_MIN: i32 = -1000;

/// KiB in a page (the kernel's counters are pages; /proc gives KiB).
const PAGE_KIB: u64 = 4;

/// One process of the domain as read from /proc after the kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRead {
    pub pid: u32,
    pub comm: String,
    pub rss_kib: u64,
    pub swap_kib: u64,
    pub pgtables_kib: u64,
    pub oom_score_adj: i32,
    /// Its memory cgroup (kernel id), where read.
    pub memcg: Option<u64>,
    /// It had begun to exit.
    pub exiting: bool,
}

/// The domain's processes as read right after a kill, or why they could not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidatesRead {
    /// How long after the kill they were read.
    pub read_after_ns: u64,
    /// The pages a machine-wide OOM weighs against (RAM and swap), read for one.
    pub machine_pages: Option<u64>,
    /// Processes not read (beyond the bound of the reading).
    pub unread: u32,
    pub processes: Result<Vec<ProcessRead>, String>,
}

/// Why the OOM killer passed a process over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Passed {
    /// `oom_score_adj` -1000: never killed.
    Unkillable,
    /// Already an OOM victim, not yet gone.
    AlreadyVictim,
    /// It was exiting: the OOM killer waits for it instead.
    Exiting,
    /// In vfork(): its memory is its parent's.
    Vfork,
}

impl Passed {
    pub fn id(self) -> &'static str {
        match self {
            Self::Unkillable => "oom_score_adj_min",
            Self::AlreadyVictim => "already_victim",
            Self::Exiting => "exiting",
            Self::Vfork => "vfork",
        }
    }

    /// In plain words.
    pub fn text(self) -> &'static str {
        match self {
            Self::Unkillable => "oom_score_adj -1000",
            Self::AlreadyVictim => "already an OOM victim",
            Self::Exiting => "exiting",
            Self::Vfork => "in vfork(), sharing its parent's memory",
        }
    }
}

/// A candidate, weighed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub process: ProcessRead,
    /// `oom_badness`'s points: RSS, swap and page tables in pages, plus `oom_score_adj`
    /// thousandths of the pages weighed against; `None` where passed over.
    pub points: Option<i64>,
    pub passed: Option<Passed>,
    /// The chosen one (its figures from the kill's own record).
    pub victim: bool,
}

/// The OOM killer's candidates for one kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidates {
    /// Best first (the ones passed over last), at most [`LISTED`]; the victim always among
    /// them (last, where it ranks lower).
    pub listed: Vec<Candidate>,
    /// Candidates beyond those listed, and processes not read.
    pub rest: u32,
    /// The victim's place among those weighed (1 = the most points).
    pub victim_rank: Option<u32>,
    /// Processes with more memory than the victim that `oom_score_adj` made weigh less.
    pub spared_by_adj: u32,
    /// The lowest `oom_score_adj` among those.
    pub spared_lowest_adj: Option<i32>,
    /// The pages weighed against.
    pub total_pages: u64,
    pub read_after_ns: u64,
    /// Read from the OOM killer's own evaluation rather than from /proc after the kill.
    pub exact: bool,
    /// Why not, where the hooks were there and could not see it.
    pub why_inferred: Option<&'static str>,
}

/// Why candidates are read from /proc though `oom_badness` is hooked: see
/// [`Victim::badness_unseen`].
pub const BADNESS_INLINED: &str = "the OOM killer's evaluation ran without calling the \
    out-of-line oom_badness this kernel's hooks see (its build inlines the function there)";

impl Tracker {
    /// Hands over the processes of victim `id`'s domain, read right after its kill.
    pub fn candidates_read(&mut self, id: VictimId, read: CandidatesRead) {
        let other_victims: Vec<u32> = self
            .victims()
            .filter(|v| v.id != id && !v.outcome.is_final())
            .filter_map(|v| v.kill.as_ref()?.victim.tgid)
            .collect();
        if let Some(v) = self.victim_mut(id) {
            v.candidates = Some(Box::new(weigh(v, &read, &other_victims)));
        }
    }
}

/// Evaluations kept until their kill arrives: the OOM killer sends each just before it.
pub(super) const MAX_EVALUATIONS: usize = 4;

/// How long before its kill an evaluation may arrive: it is sent as `oom_kill_process` is
/// entered, and the kill follows once the OOM header and task list are printed (seconds on a
/// slow serial console).
const EVALUATION_BEFORE_KILL_NS: u64 = 10_000_000_000;

impl Tracker {
    /// Gives victim `id` the OOM killer's own evaluation that chose it, if one arrived.
    pub(super) fn join_evaluation(&mut self, id: VictimId) {
        let Some(v) = self.victim(id) else {
            return;
        };
        let (Some(tgid), Some(at)) = (
            v.kill.as_ref().and_then(|k| k.victim.tgid),
            v.killed_at_ns(),
        ) else {
            return;
        };
        let Some(i) = self.evaluations.iter().rposition(|e| {
            e.chosen_tgid == tgid
                && e.timestamp_ns <= at
                && at - e.timestamp_ns < EVALUATION_BEFORE_KILL_NS
        }) else {
            return;
        };
        let Some(evaluation) = self.evaluations.remove(i) else {
            return;
        };
        if let Some(v) = self.victim_mut(id) {
            if evaluation.weighed == 0 {
                v.badness_unseen = true;
            } else {
                v.candidates = Some(Box::new(Ok(from_evaluation(v, &evaluation))));
            }
        }
    }
}

/// The candidates of `v`'s kill from what was read, or why there are none.
fn weigh(v: &Victim, read: &CandidatesRead, other_victims: &[u32]) -> Result<Candidates, String> {
    let processes = read.processes.as_ref().map_err(Clone::clone)?;
    let total_pages = v
        .badness()
        .map(|(_, pages)| pages)
        .or(read.machine_pages)
        .filter(|&p| p > 0)
        .ok_or("the pages the OOM killer weighed against are unknown")?;
    let victim_tgid = v.kill.as_ref().and_then(|k| k.victim.tgid).unwrap_or(v.pid);
    let mut weighed: Vec<Candidate> = processes
        .iter()
        .filter(|p| p.pid != victim_tgid)
        .map(|p| weigh_one(p, total_pages, other_victims))
        .collect();
    weighed.push(victim_candidate(v, victim_tgid, total_pages, processes));
    let mut candidates = rank(weighed, read.unread, total_pages, read.read_after_ns, false);
    candidates.why_inferred = v.badness_unseen.then_some(BADNESS_INLINED);
    Ok(candidates)
}

/// The candidates of `v`'s kill as the OOM killer's own evaluation `e` weighed them.
pub(super) fn from_evaluation(v: &Victim, e: &OomCandidates) -> Candidates {
    let victim_tgid = v.kill.as_ref().and_then(|k| k.victim.tgid).unwrap_or(v.pid);
    let mut weighed: Vec<Candidate> = Vec::new();
    // Those with the most points, then the large ones `oom_score_adj` held down (so that
    // `spared_by_adj` counts them when they fell out of the first list), each once.
    for c in e.candidates.iter().chain(&e.spared) {
        let candidate = evaluated(c, victim_tgid);
        if !weighed
            .iter()
            .any(|w| w.process.pid == candidate.process.pid)
        {
            weighed.push(candidate);
        }
    }
    let kept = weighed.len() as u32;
    // A process that asked to be killed first (`oom_task_origin`) is chosen unweighed.
    if !weighed.iter().any(|c| c.victim) {
        weighed.push(victim_candidate(v, victim_tgid, e.total_pages, &[]));
    }
    rank(
        weighed,
        e.weighed.saturating_sub(kept),
        e.total_pages,
        0,
        true,
    )
}

/// One process as `oom_badness` weighed it, and why it was passed over if it was: the
/// function says only "not at all" (`LONG_MIN`), so the reason is told from what it checks.
fn evaluated(c: &OomCandidate, victim_tgid: u32) -> Candidate {
    let tgid = c.task.tgid.unwrap_or(c.task.pid);
    let passed = c.points.is_none().then(|| match c.memory {
        _ if c.oom_score_adj <= OOM_SCORE_ADJ_MIN => Passed::Unkillable,
        None => Passed::Exiting,
        Some(m) if has_mmf_oom_skip(m.mm_flags) => Passed::AlreadyVictim,
        Some(_) => Passed::Vfork,
    });
    let memory = c.memory;
    Candidate {
        process: ProcessRead {
            pid: tgid,
            comm: c.task.comm.clone().unwrap_or_default(),
            rss_kib: memory.map_or(0, |m| m.rss_kib),
            swap_kib: memory.map_or(0, |m| m.swap_kib),
            pgtables_kib: memory.map_or(0, |m| m.pgtables_kib),
            oom_score_adj: c.oom_score_adj,
            memcg: c.memcg_id,
            exiting: false,
        },
        points: c.points,
        passed,
        victim: tgid == victim_tgid,
    }
}

/// Orders the weighed candidates (the victim among them), ranks the victim, counts those
/// `oom_score_adj` spared, and keeps the first [`LISTED`]; `unread` more were not weighed
/// here.
fn rank(
    mut weighed: Vec<Candidate>,
    unread: u32,
    total_pages: u64,
    read_after_ns: u64,
    exact: bool,
) -> Candidates {
    let memory = |c: &Candidate| c.process.rss_kib + c.process.swap_kib + c.process.pgtables_kib;
    let (victim_memory, victim_points) = weighed
        .iter()
        .find(|c| c.victim)
        .map_or((0, None), |c| (memory(c), c.points));
    // Best first; passed over last; ties by pid, so the order is the same everywhere.
    weighed.sort_by_key(|c| {
        (
            c.passed.is_some(),
            std::cmp::Reverse(c.points),
            c.process.pid,
        )
    });
    let victim_rank = weighed
        .iter()
        .filter(|c| c.passed.is_none())
        .position(|c| c.victim)
        .map(|i| i as u32 + 1);
    let spared: Vec<i32> = weighed
        .iter()
        .filter(|c| !c.victim && c.process.oom_score_adj < 0)
        .filter(|c| memory(c) > victim_memory)
        .filter(|c| match (c.points, victim_points) {
            (Some(p), Some(vp)) => p < vp,
            _ => c.passed == Some(Passed::Unkillable),
        })
        .map(|c| c.process.oom_score_adj)
        .collect();
    let rest = weighed.len().saturating_sub(LISTED) as u32 + unread;
    // The victim is always listed: last, in place of the eighth, where it ranks lower.
    match weighed.iter().position(|c| c.victim) {
        Some(at) if at >= LISTED => {
            let victim = weighed.remove(at);
            weighed.truncate(LISTED - 1);
            weighed.push(victim);
        }
        _ => weighed.truncate(LISTED),
    }
    Candidates {
        listed: weighed,
        rest,
        victim_rank,
        spared_by_adj: spared.len() as u32,
        spared_lowest_adj: spared.iter().copied().min(),
        total_pages,
        read_after_ns,
        exact,
        why_inferred: None,
    }
}

/// `oom_badness` of one process read from /proc.
fn weigh_one(p: &ProcessRead, total_pages: u64, other_victims: &[u32]) -> Candidate {
    let passed = if p.oom_score_adj <= OOM_SCORE_ADJ_MIN {
        Some(Passed::Unkillable)
    } else if other_victims.contains(&p.pid) {
        Some(Passed::AlreadyVictim)
    } else if p.exiting {
        Some(Passed::Exiting)
    } else {
        None
    };
    Candidate {
        points: passed.is_none().then(|| points(p, total_pages)),
        process: p.clone(),
        passed,
        victim: false,
    }
}

/// The victim as the kill's record has it (it is dying when /proc is read); its memory
/// cgroup as read if it was.
fn victim_candidate(v: &Victim, tgid: u32, total_pages: u64, read: &[ProcessRead]) -> Candidate {
    let kill = v.kill.as_ref();
    let memory = v.memory_at_kill();
    let process = ProcessRead {
        pid: tgid,
        comm: kill.and_then(|k| k.victim.comm.clone()).unwrap_or_default(),
        rss_kib: memory.map_or(0, |m| m.anon_rss_kib + m.file_rss_kib + m.shmem_rss_kib),
        swap_kib: kill.and_then(|k| k.swap_kib).unwrap_or(0),
        pgtables_kib: memory.map_or(0, |m| m.pgtables_kib),
        oom_score_adj: kill.and_then(|k| k.oom_score_adj).unwrap_or(0),
        memcg: v
            .memcg_id()
            .or_else(|| read.iter().find(|p| p.pid == tgid).and_then(|p| p.memcg)),
        exiting: false,
    };
    let points = v
        .badness()
        .map(|(points, _)| points)
        .unwrap_or_else(|| points(&process, total_pages));
    Candidate {
        process,
        points: Some(points),
        passed: None,
        victim: true,
    }
}

/// RSS, swap and page tables in pages, plus `oom_score_adj` thousandths of `total_pages`.
fn points(p: &ProcessRead, total_pages: u64) -> i64 {
    let pages = (p.rss_kib + p.swap_kib + p.pgtables_kib) / PAGE_KIB;
    pages as i64 + i64::from(p.oom_score_adj) * (total_pages / 1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        testing::fixtures::kill_at,
        wire::{decode, encode},
    };

    fn process(pid: u32, comm: &str, rss_mib: u64, adj: i32) -> ProcessRead {
        ProcessRead {
            pid,
            comm: comm.into(),
            rss_kib: rss_mib << 10,
            swap_kib: 0,
            pgtables_kib: 0,
            oom_score_adj: adj,
            memcg: Some(4026),
            exiting: false,
        }
    }

    /// A kill of `pid` at `ms`, its mm its own.
    fn killed(t: &mut Tracker, ms: u64, pid: u32) -> VictimId {
        let mut raw = kill_at(ms, pid, "hog");
        raw.victim_mm += u64::from(pid) << 12;
        t.apply(&decode(&encode(&raw)).unwrap());
        t.victims().last().unwrap().id
    }

    /// Victim `id`'s candidates, which the test expects it to have.
    fn candidates_of(t: &Tracker, id: VictimId) -> Candidates {
        let v = t.victim(id).expect("the victim");
        v.candidates
            .as_deref()
            .cloned()
            .expect("candidates")
            .expect("weighed")
    }

    /// Hands victim `id` its domain's processes as read 1 ns after the kill.
    fn hand(t: &mut Tracker, id: VictimId, processes: Result<Vec<ProcessRead>, String>) {
        t.candidates_read(
            id,
            CandidatesRead {
                read_after_ns: 1,
                machine_pages: None,
                unread: 0,
                processes,
            },
        );
    }

    #[test]
    fn the_victim_ranks_first_and_the_larger_ones_adj_spared_are_named() {
        let mut t = Tracker::default();
        // Killed: 64 MiB anon, 1 MiB file, 600 KiB page tables, adj 0, in a 128 MiB limit.
        let id = killed(&mut t, 1_000, 7);
        let read = CandidatesRead {
            read_after_ns: 2_000_000,
            machine_pages: None,
            unread: 3,
            processes: Ok(vec![
                // The victim itself, dying as read: its kill's figures stand instead.
                process(7, "hog", 1, 0),
                process(20, "postgres", 100, -900),
                process(21, "agent", 90, -1000),
                process(22, "sidecar", 10, 0),
                ProcessRead {
                    exiting: true,
                    ..process(23, "leaving", 5, 0)
                },
            ]),
        };
        t.candidates_read(id, read);
        let v = t.victim(id).unwrap();
        let c = v.candidates.as_deref().unwrap().as_ref().unwrap();
        let order: Vec<u32> = c.listed.iter().map(|c| c.process.pid).collect();
        // Weighed best first (the victim, the sidecar, postgres), then the ones passed over.
        assert_eq!(order, vec![7, 22, 20, 21, 23]);
        assert_eq!(c.victim_rank, Some(1));
        let victim = &c.listed[0];
        assert!(victim.victim);
        assert_eq!(victim.points, v.badness().map(|b| b.0));
        assert_eq!(victim.process.rss_kib, 65_536 + 1024);
        // postgres: 25 600 pages, less 900 thousandths of 32 768.
        assert_eq!(c.listed[2].points, Some(25_600 - 900 * 32));
        assert_eq!(c.listed[3].passed, Some(Passed::Unkillable));
        assert_eq!(c.listed[4].passed, Some(Passed::Exiting));
        // Both larger ones were spared by their adj; the lowest is -1000.
        assert_eq!((c.spared_by_adj, c.spared_lowest_adj), (2, Some(-1000)));
        assert_eq!(c.rest, 3);
        assert!(!c.exact);
    }

    #[test]
    fn the_oom_killers_own_evaluation_joins_its_kill_and_is_exact() {
        use crate::testing::fixtures::oom_candidates_at;
        let mut t = Tracker::default();
        let evaluation = oom_candidates_at(
            999,
            7,
            32_768,
            &[
                (22, "sidecar", 2_560, 10, 0),
                (7, "hog", 17_000, 64, 0),
                (21, "agent", i64::MIN, 90, -1000),
                (20, "postgres", 2_000, 100, -900),
            ],
        );
        // One for another process first: it is not this kill's.
        let other = oom_candidates_at(998, 8, 32_768, &[(8, "other", 1, 1, 0)]);
        for raw in [other, evaluation] {
            t.apply(&decode(&encode(&raw)).unwrap());
        }
        let id = killed(&mut t, 1_000, 7);
        let v = t.victim(id).unwrap();
        let c = v.candidates.as_deref().unwrap().as_ref().unwrap();
        assert!(c.exact);
        let order: Vec<u32> = c.listed.iter().map(|c| c.process.pid).collect();
        assert_eq!(order, vec![7, 22, 20, 21]);
        assert_eq!(c.victim_rank, Some(1));
        assert!(c.listed[0].victim);
        // The kernel's own points, not worked out again.
        assert_eq!(c.listed[0].points, Some(17_000));
        assert_eq!(c.listed[3].passed, Some(Passed::Unkillable));
        assert_eq!((c.spared_by_adj, c.spared_lowest_adj), (2, Some(-1000)));
        assert_eq!((c.rest, c.total_pages), (0, 32_768));
    }

    #[test]
    fn a_large_process_adj_held_down_is_named_even_beyond_the_eight_kept() {
        use crate::testing::fixtures::oom_candidates_at;
        let mut t = Tracker::default();
        // Nine small processes with more points than the database, which -900 held down.
        let mut processes: Vec<(u32, &str, i64, u64, i32)> = (0..9)
            .map(|i| (30 + i, "worker", 1_000 + i64::from(i), 4, 0))
            .collect();
        processes.insert(0, (7, "hog", 17_000, 64, 500));
        let mut raw = oom_candidates_at(999, 7, 32_768, &processes);
        // The database is not among the eight kept by points, only among the spared.
        let db = (20, "postgres", -3_000, 100, -900);
        let with_db = oom_candidates_at(999, 7, 32_768, &[db]);
        raw.weighed += 1;
        raw.spared = with_db.spared;
        raw.spared_count = with_db.spared_count;
        t.apply(&decode(&encode(&raw)).unwrap());
        let id = killed(&mut t, 1_000, 7);
        let v = t.victim(id).unwrap();
        let c = v.candidates.as_deref().unwrap().as_ref().unwrap();
        assert!(c.exact);
        assert_eq!((c.spared_by_adj, c.spared_lowest_adj), (1, Some(-900)));
        // Eight listed; the rest are the two workers and the database not listed.
        assert_eq!(c.listed.len(), LISTED);
        assert_eq!(c.rest, 3);
    }

    #[test]
    fn an_evaluation_that_never_reached_oom_badness_leaves_proc_to_say_why() {
        use crate::testing::fixtures::oom_candidates_at;
        let mut t = Tracker::default();
        let empty = oom_candidates_at(999, 7, 32_768, &[]);
        t.apply(&decode(&encode(&empty)).unwrap());
        let id = killed(&mut t, 1_000, 7);
        assert!(t.victim(id).unwrap().candidates.is_none());
        hand(&mut t, id, Ok(vec![process(7, "hog", 1, 0)]));
        let v = t.victim(id).unwrap();
        let c = v.candidates.as_deref().unwrap().as_ref().unwrap();
        assert_eq!((c.exact, c.why_inferred), (false, Some(BADNESS_INLINED)));
    }

    #[test]
    fn an_evaluation_tells_why_a_process_was_passed_over() {
        use crate::wire::{CandidateMemory, OomCandidate, Task};
        let task = |tgid| Task {
            pid: tgid,
            tgid: Some(tgid),
            comm: None,
        };
        let memory = |mm_flags| {
            Some(CandidateMemory {
                rss_kib: 1,
                swap_kib: 0,
                pgtables_kib: 0,
                mm_flags,
            })
        };
        let passed = |adj, memory| {
            let c = OomCandidate {
                task: task(5),
                points: None,
                memory,
                oom_score_adj: adj,
                memcg_id: None,
            };
            evaluated(&c, 1).passed
        };
        assert_eq!(passed(-1000, memory(0)), Some(Passed::Unkillable));
        assert_eq!(passed(0, None), Some(Passed::Exiting));
        assert_eq!(passed(0, memory(1 << 21)), Some(Passed::AlreadyVictim));
        assert_eq!(passed(0, memory(0)), Some(Passed::Vfork));
    }

    #[test]
    fn an_earlier_victim_still_dying_is_passed_over_and_the_list_is_bounded() {
        let mut t = Tracker::default();
        killed(&mut t, 1_000, 30);
        let id = killed(&mut t, 1_100, 7);
        let mut processes: Vec<ProcessRead> =
            (100..120).map(|pid| process(pid, "worker", 1, 0)).collect();
        processes.push(process(30, "hog", 60, 0));
        hand(&mut t, id, Ok(processes));
        let c = candidates_of(&t, id);
        assert_eq!(c.listed.len(), LISTED);
        assert_eq!(c.rest, 22 - LISTED as u32);
        assert_eq!(c.victim_rank, Some(1));
        // The earlier victim is last of all, passed over though it holds the most memory:
        // beyond the listed ones.
        assert!(c.listed.iter().all(|c| c.process.pid != 30));
    }

    #[test]
    fn a_victim_ranked_below_the_listed_ones_is_listed_last() {
        let mut t = Tracker::default();
        let id = killed(&mut t, 1_000, 7);
        // Ten processes larger than the victim's 64 MiB.
        let processes = (100..110).map(|pid| process(pid, "big", 100, 0)).collect();
        hand(&mut t, id, Ok(processes));
        let c = candidates_of(&t, id);
        assert_eq!(c.listed.len(), LISTED);
        assert!(c.listed[LISTED - 1].victim);
        assert_eq!(c.victim_rank, Some(11));
        assert_eq!(c.rest, 11 - LISTED as u32);
    }

    #[test]
    fn a_domain_that_could_not_be_read_says_why() {
        let mut t = Tracker::default();
        let id = killed(&mut t, 1_000, 7);
        hand(&mut t, id, Err("memory cgroup 4026 was removed".into()));
        let c = t.victim(id).unwrap().candidates.as_deref().unwrap();
        assert_eq!(c, &Err("memory cgroup 4026 was removed".to_owned()));
    }
}
