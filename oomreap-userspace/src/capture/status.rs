//! Whether and how each hook is attached, worded once for every reader (`doctor`, the
//! capture's log) and written once for recordings and `doctor --json`.
use oomreap_common::event::AttachKind;
use serde_json::{Value, json};

use super::hooks;

/// A hook, and whether and how it is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookStatus {
    /// The kernel's name for it, e.g. `oom:mark_victim`.
    pub name: &'static str,
    /// What it provides.
    pub provides: &'static str,
    /// How it is attached; `None` if it is not.
    pub attach: Option<AttachKind>,
    /// Why it is not attached, or why a better attach kind was not used.
    pub note: Option<String>,
    /// For a hot hook, when it is attached: only while an OOM victim is in flight, or all
    /// the time and why (see [`super::gate`]); for an attached fallback, whose place it takes
    /// and what that costs; `None` for the others.
    pub attached_when: Option<String>,
    /// Why it is not attached because nothing needs it on this kernel (what it would tell
    /// comes from elsewhere); `None` for a hook that is attached or missed.
    pub not_needed: Option<String>,
}

impl HookStatus {
    /// Returns true if and only if the hook is a kernel function (not a tracepoint).
    pub fn is_function(&self) -> bool {
        hooks::by_name(self.name).is_some_and(|hook| hook.function().is_some())
    }

    /// For a hook that is missed (neither attached nor not needed): why, and what is lost.
    pub fn missing(&self) -> Option<String> {
        if self.attach.is_some() || self.not_needed.is_some() {
            return None;
        }
        Some(format!(
            "not attached: {}; without it, oomreap cannot show {}",
            self.note.as_deref().unwrap_or("unknown reason"),
            self.provides
        ))
    }

    /// As recordings and `doctor --json` write it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "provides": self.provides,
            "attached": self.attach.is_some(),
            "attach": self.attach.map(AttachKind::id),
            "note": self.note,
            "attached_when": self.attached_when,
            "not_needed": self.not_needed,
        })
    }

    /// A written hook, if this oomreap knows its name (what it provides is this oomreap's
    /// wording, not the writer's).
    pub fn from_json(value: &Value) -> Option<Self> {
        let hook = hooks::by_name(value["name"].as_str()?)?;
        let attach = match value["attach"].as_str() {
            Some(id) => Some(AttachKind::from_id(id)?),
            None => None,
        };
        let text = |key: &str| value[key].as_str().map(str::to_owned);
        Some(Self {
            name: hook.name,
            provides: hook.provides,
            attach,
            note: text("note"),
            attached_when: text("attached_when"),
            not_needed: text("not_needed"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(attach: Option<AttachKind>, not_needed: Option<&str>) -> HookStatus {
        let hook = &super::super::HOOKS[1];
        HookStatus {
            name: hook.name,
            provides: hook.provides,
            attach,
            note: Some("refused".into()),
            attached_when: Some("always".into()),
            not_needed: not_needed.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_missed_hook_says_what_is_lost() {
        let missed = status(None, None);
        assert_eq!(
            missed.missing().unwrap(),
            format!(
                "not attached: refused; without it, oomreap cannot show {}",
                missed.provides
            )
        );
        assert_eq!(status(Some(AttachKind::Fentry), None).missing(), None);
        assert_eq!(status(None, Some("read elsewhere")).missing(), None);
    }

    #[test]
    fn written_and_read_back_unchanged() {
        for written in [
            status(None, None),
            status(Some(AttachKind::TracePoint), None),
            status(None, Some("read elsewhere")),
        ] {
            assert_eq!(HookStatus::from_json(&written.to_json()), Some(written));
        }
        assert_eq!(
            HookStatus::from_json(&json!({"name": "no:such_hook"})),
            None
        );
    }
}
