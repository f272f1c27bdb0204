//! Expectations a `run` checks once the command is done, each judged per victim so a failure
//! names the victim that broke it.
use super::report::VictimSummary;

/// Something a run may fail on: `--fail-on`'s values (their docs are its help).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A victim the reaper gave up on.
    GaveUp,
    /// An attempt that met a contended mmap_lock.
    LockContention,
    /// A victim whose mm had mmu notifiers.
    Notifier,
    /// A partial reap pass.
    Partial,
    /// Events lost between the kernel and oomreap.
    DroppedEvents,
    /// A victim whose kill was one of an OOM loop's: its domain kept killing without getting
    /// memory back.
    OomLoop,
}

impl FailOn {
    pub fn name(self) -> &'static str {
        match self {
            Self::GaveUp => "gave-up",
            Self::LockContention => "lock-contention",
            Self::Notifier => "notifier",
            Self::Partial => "partial",
            Self::DroppedEvents => "dropped-events",
            Self::OomLoop => "oom-loop",
        }
    }
}

/// One expectation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// Every victim was reaped or freed its memory otherwise (exited, already gone, released).
    Reaped,
    /// Every victim's memory was gone within this many milliseconds of its kill.
    MaxReapMs(u64),
    /// Every kill gave its OOM domain memory back (`recovery` judged `recovered`).
    Recovered,
    FailOn(FailOn),
    /// Exactly this many victims.
    Victims(u64),
    /// At least this many victims.
    MinVictims(u64),
}

impl Expectation {
    /// The name used in reports and JUnit test cases.
    pub fn name(self) -> String {
        match self {
            Self::Reaped => "expect-reaped".into(),
            Self::Recovered => "expect-recovered".into(),
            Self::MaxReapMs(ms) => format!("max-reap-ms {ms}"),
            Self::FailOn(what) => format!("fail-on {}", what.name()),
            Self::Victims(n) => format!("expect-victims {n}"),
            Self::MinVictims(n) => format!("min-victims {n}"),
        }
    }
}

/// How one expectation fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub expectation: String,
    /// Why it failed, one line per offending victim; empty if it held.
    pub failures: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Judges `expectation` against the run's victims and lost events.
pub fn judge(expectation: Expectation, victims: &[VictimSummary], dropped: u64) -> Verdict {
    let each = |bad: &dyn Fn(&VictimSummary) -> Option<String>| -> Vec<String> {
        victims
            .iter()
            .filter_map(|v| bad(v).map(|why| format!("victim {}: {why}", v.name())))
            .collect()
    };
    let failures = match expectation {
        Expectation::Reaped => each(&|v| {
            (!matches!(
                v.outcome.as_str(),
                "reaped" | "exited" | "already_gone" | "released"
            ))
            .then(|| format!("outcome {}", v.outcome))
        }),
        Expectation::MaxReapMs(limit) => each(&|v| match v.memory_gone_ms() {
            Some(ms) if ms <= limit => None,
            Some(ms) => Some(format!(
                "memory gone {ms} ms after the kill, over {limit} ms"
            )),
            None => Some("memory never seen gone".into()),
        }),
        Expectation::Recovered => each(&VictimSummary::not_recovered),
        Expectation::FailOn(FailOn::OomLoop) => each(&|v| {
            v.in_oom_loop
                .then(|| "its kill was one of an OOM loop's".into())
        }),
        Expectation::FailOn(FailOn::GaveUp) => {
            each(&|v| (v.outcome == "gave_up").then(|| "the reaper gave up".into()))
        }
        Expectation::FailOn(FailOn::LockContention) => each(&|v| {
            (v.lock_contended_attempts > 0).then(|| {
                format!(
                    "{} attempts met a contended mmap_lock",
                    v.lock_contended_attempts
                )
            })
        }),
        Expectation::FailOn(FailOn::Notifier) => {
            each(&|v| (v.notifiers > 0).then(|| format!("{} mmu notifiers", v.notifiers)))
        }
        Expectation::FailOn(FailOn::Partial) => {
            each(&|v| (v.partial_reaps > 0).then(|| format!("{} partial reaps", v.partial_reaps)))
        }
        Expectation::FailOn(FailOn::DroppedEvents) => {
            if dropped > 0 {
                vec![format!("{dropped} events lost")]
            } else {
                Vec::new()
            }
        }
        Expectation::Victims(n) => {
            if victims.len() as u64 == n {
                Vec::new()
            } else {
                vec![format!("{} victims, expected {n}", victims.len())]
            }
        }
        Expectation::MinVictims(n) => {
            if victims.len() as u64 >= n {
                Vec::new()
            } else {
                vec![format!("{} victims, expected at least {n}", victims.len())]
            }
        }
    };
    Verdict {
        expectation: expectation.name(),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::*;

    #[test]
    fn each_value_is_named_as_the_flag_takes_it() {
        for value in FailOn::value_variants() {
            let flag = value.to_possible_value().unwrap();
            assert_eq!(value.name(), flag.get_name());
        }
    }
}
