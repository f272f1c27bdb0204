//! Annotations: what the kernel events name only by number, resolved on the machine and at
//! the moment they happened — memory cgroup paths and pods, the symbols of mmu notifier
//! callbacks, lock holders' kernel stacks, the kernel release and the hooks.
//!
//! A live intake resolves them as the tracker reports new victims and attempts, and writes
//! each one into the recording (as a context record) when first seen; a replay reads them
//! back. Front ends read only this, so a replay anywhere shows what the live view showed.
use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{
    capture::HookStatus,
    enrich::{CgroupInfo, PodIdentity, Stack, UserFrame, UserStack},
    tracker::VictimId,
};

/// Entries of each kind kept; a table starts over beyond this (cgroups come and go, a pod
/// each, and stacks are per attempt).
const MAX_ENTRIES: usize = 4096;

/// Lock holders' stacks for one attempt: each task's pid with its stack or why there is none.
pub type HolderStacks = Vec<(u32, Stack)>;

/// What was known about the events' numbers where and when they were captured.
#[derive(Debug, Default, Clone)]
pub struct Annotations {
    /// `uname -r` of the capturing machine.
    pub kernel: Option<String>,
    /// The hooks and how each was attached.
    pub hooks: Vec<HookStatus>,
    cgroups: HashMap<u64, CgroupInfo>,
    symbols: HashMap<u64, Symbol>,
    stacks: HashMap<(VictimId, usize), HolderStacks>,
    user_stacks: HashMap<VictimId, UserStack>,
}

impl Annotations {
    /// The memory cgroup with this kernel id, if it was resolved.
    pub fn cgroup(&self, id: u64) -> Option<&CgroupInfo> {
        self.cgroups.get(&id)
    }

    /// `symbol [module]` at a kernel address, if it was resolved.
    pub fn symbol(&self, address: u64) -> Option<&str> {
        self.symbols.get(&address).map(|s| s.name.as_str())
    }

    /// The subsystem that registered the mmu notifier callback at a kernel address (its
    /// module, or its symbol's first word), if the symbol was resolved: worked out once,
    /// when the symbol arrives, for every front end.
    pub fn notifier_owner(&self, address: u64) -> Option<&str> {
        self.symbols.get(&address).map(|s| s.owner.as_str())
    }

    /// The stacks read for attempt `index` of `victim` (read when its lock holders changed).
    pub fn stacks(&self, victim: VictimId, index: usize) -> Option<&HolderStacks> {
        self.stacks.get(&(victim, index))
    }

    /// The user stack of the task that hit the OOM at `victim`'s kill, resolved then.
    pub fn user_stack(&self, victim: VictimId) -> Option<&UserStack> {
        self.user_stacks.get(&victim)
    }

    pub(super) fn knows_cgroup(&self, id: u64) -> bool {
        self.cgroups.contains_key(&id)
    }

    pub(super) fn knows_symbol(&self, address: u64) -> bool {
        self.symbols.contains_key(&address)
    }

    /// Adds a cgroup; returns its context record.
    pub(super) fn add_cgroup(&mut self, id: u64, info: CgroupInfo) -> Value {
        let record = json!({"cgroup": cgroup_json(id, &info)});
        bounded_insert(&mut self.cgroups, id, info);
        record
    }

    /// Adds a symbol; returns its context record.
    pub(super) fn add_symbol(&mut self, address: u64, symbol: String) -> Value {
        let record = json!({"symbol": {"address": address, "name": symbol}});
        bounded_insert(&mut self.symbols, address, Symbol::new(symbol));
        record
    }

    /// Adds an attempt's holder stacks; returns their context record.
    pub(super) fn add_stacks(
        &mut self,
        victim: VictimId,
        index: usize,
        stacks: HolderStacks,
    ) -> Value {
        let tasks: Vec<Value> = stacks
            .iter()
            .map(|(pid, stack)| match stack {
                Ok(frames) => json!({"pid": pid, "frames": frames}),
                Err(why) => json!({"pid": pid, "error": why}),
            })
            .collect();
        let record = json!({"stacks": {"victim": victim.0, "attempt": index, "tasks": tasks}});
        bounded_insert(&mut self.stacks, (victim, index), stacks);
        record
    }

    /// Adds the trigger's resolved user stack at a victim's kill; returns its context record.
    pub(super) fn add_user_stack(&mut self, victim: VictimId, stack: UserStack) -> Value {
        let record = match &stack {
            Ok(frames) => json!({"user_stack": {
                "victim": victim.0,
                "frames": frames.iter().map(user_frame_json).collect::<Vec<_>>(),
            }}),
            Err(why) => json!({"user_stack": {"victim": victim.0, "error": why}}),
        };
        bounded_insert(&mut self.user_stacks, victim, stack);
        record
    }

    /// The record naming the kernel and the hooks, first in a recording.
    pub(super) fn source_record(&self) -> Value {
        let hooks: Vec<Value> = self.hooks.iter().map(HookStatus::to_json).collect();
        json!({"kernel": self.kernel, "hooks": hooks})
    }

    /// Folds in a context record read from a recording. Records of a kind this oomreap does
    /// not know are ignored (a newer oomreap may add kinds); a malformed one is an error.
    pub(super) fn apply_record(&mut self, record: &Value) -> Result<(), String> {
        let object = record.as_object().ok_or("not a JSON object")?;
        if let Some(hooks) = object.get("hooks") {
            self.kernel = object.get("kernel").and_then(Value::as_str).map(Into::into);
            self.hooks = hooks
                .as_array()
                .ok_or("hooks is not a list")?
                .iter()
                .filter_map(HookStatus::from_json)
                .collect();
        }
        if let Some(cgroup) = object.get("cgroup") {
            let (id, info) = cgroup_from_json(cgroup).ok_or("malformed cgroup")?;
            bounded_insert(&mut self.cgroups, id, info);
        }
        if let Some(symbol) = object.get("symbol") {
            let address = symbol["address"].as_u64().ok_or("symbol without address")?;
            let name = symbol["name"].as_str().ok_or("symbol without name")?;
            bounded_insert(&mut self.symbols, address, Symbol::new(name.to_owned()));
        }
        if let Some(stacks) = object.get("stacks") {
            let victim = stacks["victim"].as_u64().ok_or("stacks without victim")?;
            let attempt = stacks["attempt"].as_u64().ok_or("stacks without attempt")?;
            let tasks = stacks["tasks"]
                .as_array()
                .ok_or("stacks without tasks")?
                .iter()
                .map(stack_from_json)
                .collect::<Option<HolderStacks>>()
                .ok_or("malformed stack")?;
            let index = usize::try_from(attempt).map_err(|_| "attempt out of range")?;
            bounded_insert(&mut self.stacks, (VictimId(victim), index), tasks);
        }
        if let Some(stack) = object.get("user_stack") {
            let victim = stack["victim"]
                .as_u64()
                .ok_or("user_stack without victim")?;
            let resolved = match (stack.get("frames"), stack["error"].as_str()) {
                (Some(frames), _) => Ok(frames
                    .as_array()
                    .ok_or("user_stack frames is not a list")?
                    .iter()
                    .map(user_frame_from_json)
                    .collect::<Option<Vec<_>>>()
                    .ok_or("malformed user frame")?),
                (None, Some(why)) => Err(why.to_owned()),
                (None, None) => return Err("user_stack without frames or error".into()),
            };
            bounded_insert(&mut self.user_stacks, VictimId(victim), resolved);
        }
        Ok(())
    }
}

/// A resolved kernel symbol and, derived from it, the notifier owner it names.
#[derive(Clone, Debug)]
struct Symbol {
    name: String,
    owner: String,
}

impl Symbol {
    fn new(name: String) -> Self {
        let owner = crate::enrich::notifier_owner(&name);
        Self { name, owner }
    }
}

/// A user frame as records and trace JSON carry it.
pub fn user_frame_json(frame: &UserFrame) -> Value {
    json!({
        "address": format!("{:#x}", frame.address),
        "module": frame.module,
        "offset": frame.offset.map(|o| format!("{o:#x}")),
        "symbol": frame.symbol,
    })
}

fn user_frame_from_json(value: &Value) -> Option<UserFrame> {
    let hex = |v: &Value| u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok();
    Some(UserFrame {
        address: hex(&value["address"])?,
        module: value["module"].as_str().map(str::to_owned),
        offset: hex(&value["offset"]),
        symbol: value["symbol"].as_str().map(str::to_owned),
    })
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

fn cgroup_json(id: u64, info: &CgroupInfo) -> Value {
    json!({
        "id": id,
        "path": info.path,
        "pod_uid": info.pod_uid,
        "container_id": info.container_id,
        "pod": info.pod.as_ref().map(|p| json!({
            "namespace": p.namespace,
            "pod": p.pod,
            "container": p.container,
            "uid": p.uid,
        })),
    })
}

fn cgroup_from_json(value: &Value) -> Option<(u64, CgroupInfo)> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let pod = match &value["pod"] {
        Value::Null => None,
        pod => Some(PodIdentity {
            namespace: text(&pod["namespace"])?,
            pod: text(&pod["pod"])?,
            container: text(&pod["container"]),
            uid: text(&pod["uid"])?,
        }),
    };
    Some((
        value["id"].as_u64()?,
        CgroupInfo {
            path: text(&value["path"])?,
            pod_uid: text(&value["pod_uid"]),
            container_id: text(&value["container_id"]),
            pod,
        },
    ))
}

fn stack_from_json(value: &Value) -> Option<(u32, Stack)> {
    let pid = u32::try_from(value["pid"].as_u64()?).ok()?;
    let stack = match value.get("frames") {
        Some(frames) => Ok(frames
            .as_array()?
            .iter()
            .map(|f| f.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()?),
        None => Err(value["error"].as_str()?.to_owned()),
    };
    Some((pid, stack))
}

#[cfg(test)]
mod tests {
    use oomreap_common::event::AttachKind;

    use super::*;

    #[test]
    fn every_kind_of_record_round_trips() {
        let mut live = Annotations {
            kernel: Some("6.18.0".into()),
            hooks: vec![HookStatus {
                name: "oom:mark_victim",
                provides: "OOM victims",
                attach: Some(AttachKind::BtfTracePoint),
                note: None,
                attached_when: None,
                not_needed: None,
            }],
            ..Annotations::default()
        };
        let pod = PodIdentity {
            namespace: "prod".into(),
            pod: "api-1".into(),
            container: Some("app".into()),
            uid: "u-1".into(),
        };
        let info = CgroupInfo {
            path: "/kubepods/podu-1/abc".into(),
            pod_uid: Some("u-1".into()),
            container_id: Some("abc".into()),
            pod: Some(pod),
        };
        let mut records = vec![live.source_record()];
        records.push(live.add_cgroup(9671, info.clone()));
        records.push(live.add_symbol(0xffff_1234, "kvm_mmu_notifier_invalidate [kvm]".into()));
        let stacks = vec![(12, Ok(vec!["do_exit".into()])), (13, Err("gone".into()))];
        records.push(live.add_stacks(VictimId(3), 4, stacks.clone()));
        let user = vec![
            UserFrame {
                address: 0x55ee_df8e_431e,
                module: Some("/usr/bin/hog".into()),
                offset: Some(0x431e),
                symbol: Some("hog::touch+0x1e".into()),
            },
            UserFrame {
                address: 0x7f00_0000_1000,
                module: None,
                offset: None,
                symbol: None,
            },
        ];
        records.push(live.add_user_stack(VictimId(3), Ok(user.clone())));
        records.push(live.add_user_stack(VictimId(4), Err("gone".into())));
        let mut replayed = Annotations::default();
        for record in &records {
            // Through text, as a recording holds them.
            let text = record.to_string();
            replayed
                .apply_record(&serde_json::from_str(&text).unwrap())
                .unwrap();
        }
        assert_eq!(replayed.kernel.as_deref(), Some("6.18.0"));
        assert_eq!(replayed.hooks, live.hooks);
        assert_eq!(replayed.cgroup(9671), Some(&info));
        assert_eq!(
            replayed.symbol(0xffff_1234),
            Some("kvm_mmu_notifier_invalidate [kvm]")
        );
        assert_eq!(replayed.stacks(VictimId(3), 4), Some(&stacks));
        assert_eq!(replayed.user_stack(VictimId(3)), Some(&Ok(user)));
        assert_eq!(replayed.user_stack(VictimId(4)), Some(&Err("gone".into())));
    }

    #[test]
    fn unknown_kinds_are_ignored_and_malformed_ones_named() {
        let mut a = Annotations::default();
        assert_eq!(a.apply_record(&json!({"future": 1})), Ok(()));
        assert_eq!(
            a.apply_record(&json!({"symbol": {"name": "x"}})),
            Err("symbol without address".into())
        );
        assert!(a.apply_record(&json!([1])).is_err());
    }

    #[test]
    fn tables_are_bounded() {
        let mut a = Annotations::default();
        for address in 0..(MAX_ENTRIES as u64 + 10) {
            a.add_symbol(address, "s".into());
        }
        assert!(a.symbols.len() <= MAX_ENTRIES);
    }
}
