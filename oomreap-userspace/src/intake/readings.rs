//! Readings, as context records: of a victim's OOM domain, `domain_memory` as the kill
//! arrived and `domain_after` once its memory was gone; of its mappings, `victim_vmas` read
//! after its kill, at the step where the reading joined. Live, the intake takes them and hands them to the tracker; a replay
//! reads them back and hands them over the same way, after the event they followed, so the
//! tracker judges as it did live.
use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::tracker::{
    CandidatesRead, DomainMemory, ProcessRead, ReadAt, Tracker, VictimId, VictimVmas, VmaClasses,
};

/// One reading for the tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    Domain(DomainMemory),
    Vmas(VictimVmas),
    Candidates(CandidatesRead),
}

impl Reading {
    /// Hands it to the tracker, which may add changes (a recovery, a loop).
    pub fn hand_to(
        self,
        tracker: &mut Tracker,
        victim: VictimId,
        changes: &mut Vec<crate::tracker::Change>,
    ) {
        match self {
            Self::Domain(memory) => tracker.domain_read(victim, memory, changes),
            Self::Vmas(vmas) => tracker.vmas_read(victim, vmas),
            Self::Candidates(read) => tracker.candidates_read(victim, read),
        }
    }

    /// Its context record.
    pub fn to_record(&self, victim: VictimId) -> Value {
        match self {
            Self::Domain(memory) => to_record(victim, memory),
            Self::Vmas(vmas) => vmas_record(victim, vmas),
            Self::Candidates(read) => candidates_record(victim, read),
        }
    }
}

/// The context record of the processes of a victim's domain.
fn candidates_record(victim: VictimId, read: &CandidatesRead) -> Value {
    let mut body = json!({
        "victim": victim.0,
        "read_after_ns": read.read_after_ns,
        "machine_pages": read.machine_pages,
        "unread": read.unread,
    });
    match &read.processes {
        Ok(processes) => {
            body["processes"] = processes
                .iter()
                .map(|p| {
                    json!({
                        "pid": p.pid, "comm": p.comm, "rss_kib": p.rss_kib,
                        "swap_kib": p.swap_kib, "pgtables_kib": p.pgtables_kib,
                        "oom_score_adj": p.oom_score_adj, "memcg": p.memcg,
                        "exiting": p.exiting,
                    })
                })
                .collect()
        }
        Err(why) => body["error"] = json!(why),
    }
    json!({ "candidates": body })
}

fn candidates_from_record(body: &Value) -> Result<(VictimId, CandidatesRead), String> {
    let victim = body["victim"].as_u64().ok_or("candidates without victim")?;
    let read_after_ns = body["read_after_ns"]
        .as_u64()
        .ok_or("candidates without read_after_ns")?;
    let process = |p: &Value| -> Option<ProcessRead> {
        Some(ProcessRead {
            pid: u32::try_from(p["pid"].as_u64()?).ok()?,
            comm: p["comm"].as_str()?.to_owned(),
            rss_kib: p["rss_kib"].as_u64()?,
            swap_kib: p["swap_kib"].as_u64()?,
            pgtables_kib: p["pgtables_kib"].as_u64()?,
            oom_score_adj: i32::try_from(p["oom_score_adj"].as_i64()?).ok()?,
            memcg: p["memcg"].as_u64(),
            exiting: p["exiting"].as_bool()?,
        })
    };
    let processes = match (body.get("processes"), body["error"].as_str()) {
        (Some(list), _) => Ok(list
            .as_array()
            .ok_or("candidates processes is not a list")?
            .iter()
            .map(process)
            .collect::<Option<Vec<_>>>()
            .ok_or("candidates holds a malformed process")?),
        (None, Some(why)) => Err(why.to_owned()),
        (None, None) => return Err("candidates without processes or error".into()),
    };
    Ok((
        VictimId(victim),
        CandidatesRead {
            read_after_ns,
            machine_pages: body["machine_pages"].as_u64(),
            unread: u32::try_from(body["unread"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX),
            processes,
        },
    ))
}

/// The context record of a victim's mappings.
fn vmas_record(victim: VictimId, vmas: &VictimVmas) -> Value {
    let mut body = json!({"victim": victim.0, "read_after_ns": vmas.read_after_ns});
    match &vmas.classes {
        Ok(c) => {
            body["classes"] = json!({
                "vmas": c.vmas, "anon_kib": c.anon_kib, "shmem_kib": c.shmem_kib,
                "file_kib": c.file_kib, "hugetlb_kib": c.hugetlb_kib, "pfnmap_kib": c.pfnmap_kib,
            })
        }
        Err(why) => body["error"] = json!(why),
    }
    json!({ "victim_vmas": body })
}

fn vmas_from_record(body: &Value) -> Result<(VictimId, VictimVmas), String> {
    let victim = body["victim"]
        .as_u64()
        .ok_or("victim_vmas without victim")?;
    let read_after_ns = body["read_after_ns"]
        .as_u64()
        .ok_or("victim_vmas without read_after_ns")?;
    let classes = match (body.get("classes"), body["error"].as_str()) {
        (Some(c), _) => {
            let n = |key: &str| {
                c[key]
                    .as_u64()
                    .ok_or_else(|| format!("victim_vmas classes without {key}"))
            };
            Ok(VmaClasses {
                vmas: u32::try_from(n("vmas")?).map_err(|_| "victim_vmas: too many vmas")?,
                anon_kib: n("anon_kib")?,
                shmem_kib: n("shmem_kib")?,
                file_kib: n("file_kib")?,
                hugetlb_kib: n("hugetlb_kib")?,
                pfnmap_kib: n("pfnmap_kib")?,
            })
        }
        (None, Some(why)) => Err(why.to_owned()),
        (None, None) => return Err("victim_vmas without classes or error".into()),
    };
    Ok((
        VictimId(victim),
        VictimVmas {
            read_after_ns,
            classes,
        },
    ))
}

/// The context record of a reading.
pub fn to_record(victim: VictimId, memory: &DomainMemory) -> Value {
    let mut body = json!({
        "victim": victim.0,
        "memcg": memory.memcg,
        "read_after_ns": memory.read_after_ns,
    });
    match &memory.kib {
        Ok(kib) => body["kib"] = json!(kib),
        Err(why) => body["error"] = json!(why),
    }
    if memory.at == ReadAt::Kill {
        json!({ "domain_memory": body })
    } else {
        body["at"] = json!(memory.at.name());
        json!({ "domain_after": body })
    }
}

/// The reading a context record holds, if it is one; a malformed one is an error.
pub fn from_record(record: &Value) -> Result<Option<(VictimId, Reading)>, String> {
    if let Some(body) = record.get("victim_vmas") {
        let (victim, vmas) = vmas_from_record(body)?;
        return Ok(Some((victim, Reading::Vmas(vmas))));
    }
    if let Some(body) = record.get("candidates") {
        let (victim, read) = candidates_from_record(body)?;
        return Ok(Some((victim, Reading::Candidates(read))));
    }
    Ok(domain_from_record(record)?.map(|(victim, memory)| (victim, Reading::Domain(memory))))
}

fn domain_from_record(record: &Value) -> Result<Option<(VictimId, DomainMemory)>, String> {
    let (key, body) = match (record.get("domain_memory"), record.get("domain_after")) {
        (Some(body), _) => ("domain_memory", body),
        (None, Some(body)) => ("domain_after", body),
        (None, None) => return Ok(None),
    };
    let victim = body["victim"]
        .as_u64()
        .ok_or_else(|| format!("{key} without victim"))?;
    let kib = match (body.get("kib"), body["error"].as_str()) {
        (Some(kib), _) => Ok(kib
            .as_object()
            .ok_or_else(|| format!("{key} kib is not an object"))?
            .iter()
            .map(|(kind, n)| Some((kind.clone(), n.as_u64()?)))
            .collect::<Option<BTreeMap<_, _>>>()
            .ok_or_else(|| format!("{key} kib holds a non-number"))?),
        (None, Some(why)) => Err(why.to_owned()),
        (None, None) => return Err(format!("{key} without kib or error")),
    };
    let at = match body.get("at").and_then(Value::as_str) {
        None if key == "domain_memory" => ReadAt::Kill,
        Some(name) if key == "domain_after" => ReadAt::from_name(name)
            .filter(|a| *a != ReadAt::Kill)
            .ok_or_else(|| format!("domain_after at an unknown moment: {name:?}"))?,
        _ => return Err(format!("{key} with a wrong or missing \"at\"")),
    };
    let memory = DomainMemory {
        memcg: body["memcg"].as_u64(),
        at,
        read_after_ns: body["read_after_ns"]
            .as_u64()
            .ok_or_else(|| format!("{key} without read_after_ns"))?,
        kib,
    };
    Ok(Some((VictimId(victim), memory)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_survive_a_recording() {
        let readings = [
            DomainMemory {
                memcg: Some(9671),
                at: ReadAt::Kill,
                read_after_ns: 1_500_000,
                kib: Ok([("anon".to_owned(), 131_072), ("usage".to_owned(), 140_000)].into()),
            },
            DomainMemory {
                memcg: None,
                at: ReadAt::ExitMmap,
                read_after_ns: 7,
                kib: Err("/proc/meminfo: gone".into()),
            },
        ];
        for (i, memory) in readings.iter().enumerate() {
            let text = to_record(VictimId(i as u64), memory).to_string();
            let back = from_record(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(
                back,
                Some((VictimId(i as u64), Reading::Domain(memory.clone())))
            );
        }
        let vmas = [
            VictimVmas {
                read_after_ns: 3,
                classes: Ok(VmaClasses {
                    vmas: 9,
                    anon_kib: 1,
                    shmem_kib: 2,
                    file_kib: 3,
                    hugetlb_kib: 4,
                    pfnmap_kib: 5,
                }),
            },
            VictimVmas {
                read_after_ns: 4,
                classes: Err("gone".into()),
            },
        ];
        let candidates = [
            Reading::Candidates(CandidatesRead {
                read_after_ns: 5,
                machine_pages: Some(6_000_000),
                unread: 2,
                processes: Ok(vec![ProcessRead {
                    pid: 42,
                    comm: "postgres".into(),
                    rss_kib: 1 << 20,
                    swap_kib: 4,
                    pgtables_kib: 2048,
                    oom_score_adj: -900,
                    memcg: Some(9671),
                    exiting: false,
                }]),
            }),
            Reading::Candidates(CandidatesRead {
                read_after_ns: 5,
                machine_pages: None,
                unread: 0,
                processes: Err("memory cgroup 9 was removed".into()),
            }),
        ];
        for reading in vmas.map(Reading::Vmas).into_iter().chain(candidates) {
            let text = reading.to_record(VictimId(7)).to_string();
            let back = from_record(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back, Some((VictimId(7), reading)));
        }
        assert_eq!(from_record(&json!({"cgroup": {}})), Ok(None));
    }

    #[test]
    fn malformed_readings_are_named() {
        assert_eq!(
            from_record(&json!({"domain_memory": {"victim": 1, "read_after_ns": 2}})),
            Err("domain_memory without kib or error".into())
        );
        assert_eq!(
            from_record(&json!({"domain_after": {"victim": 1, "read_after_ns": 2, "kib": {}}})),
            Err("domain_after with a wrong or missing \"at\"".into())
        );
        assert_eq!(
            from_record(&json!({"domain_after":
                {"victim": 1, "read_after_ns": 2, "kib": {}, "at": "later"}})),
            Err("domain_after at an unknown moment: \"later\"".into())
        );
        assert_eq!(
            from_record(&json!({"victim_vmas": {"victim": 1, "read_after_ns": 2,
                "classes": {"vmas": 1}}})),
            Err("victim_vmas classes without anon_kib".into())
        );
    }
}
