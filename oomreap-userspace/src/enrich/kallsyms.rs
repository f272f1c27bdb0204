//! The kernel's text symbols from /proc/kallsyms, for notifier callbacks and stack frames.
//!
//! A live front end loads them once, on a thread of their own, as it starts (as bpftrace and
//! bcc do): reading and parsing the ~150 000 lines takes tens of milliseconds on a real
//! machine but seconds in an emulated guest, and must never stall the intake. The table is
//! compact (one string of names, an index of addresses): a few MiB.
use std::thread::JoinHandle;

/// The text symbols (`name [module]`), sorted by address.
pub struct KernelSymbols {
    starts: Vec<u64>,
    /// Where each label ends in `names`; it starts where the previous one ends.
    ends: Vec<u32>,
    names: String,
}

impl KernelSymbols {
    /// Text symbols (`t`/`T`) of a /proc/kallsyms text; hidden ones (address 0) left out.
    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, &str, Option<&str>)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let address = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                if address == 0 || !matches!(kind, "t" | "T") {
                    return None;
                }
                Some((address, name, parts.next()))
            })
            .collect();
        symbols.sort_unstable_by_key(|s| s.0);
        let mut table = Self {
            starts: Vec::with_capacity(symbols.len()),
            ends: Vec::with_capacity(symbols.len()),
            names: String::new(),
        };
        for (address, name, module) in symbols {
            table.starts.push(address);
            table.names.push_str(name);
            if let Some(module) = module {
                table.names.push(' ');
                table.names.push_str(module);
            }
            table
                .ends
                .push(u32::try_from(table.names.len()).unwrap_or(u32::MAX));
        }
        table
    }

    fn label(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] as usize);
        self.names.get(start..self.ends[i] as usize).unwrap_or("")
    }

    /// The symbol that starts exactly at `address`.
    pub fn at(&self, address: u64) -> Option<&str> {
        let i = self.starts.binary_search(&address).ok()?;
        Some(self.label(i))
    }

    /// `name+0xoffset [module]` for an address inside a function: the nearest symbol below
    /// it, within the largest function size that is plausible.
    pub fn frame(&self, address: u64) -> Option<String> {
        const MAX_FUNCTION_BYTES: u64 = 1 << 20;
        let i = self
            .starts
            .partition_point(|s| *s <= address)
            .checked_sub(1)?;
        let offset = address - self.starts[i];
        if offset >= MAX_FUNCTION_BYTES {
            return None;
        }
        let label = self.label(i);
        Some(match label.split_once(' ') {
            Some((name, module)) => format!("{name}+{offset:#x} {module}"),
            None => format!("{label}+{offset:#x}"),
        })
    }
}

/// The symbol table, loaded on demand or in the background.
pub enum SymbolTable {
    Unloaded,
    Loading(JoinHandle<Result<KernelSymbols, String>>),
    Ready(Result<KernelSymbols, String>),
}

impl SymbolTable {
    /// Starts loading on a thread of its own; `read` gives /proc/kallsyms' text.
    pub fn preload(read: impl FnOnce() -> std::io::Result<String> + Send + 'static) -> Self {
        let loader = std::thread::Builder::new()
            .name("oomreap-kallsyms".into())
            .spawn(move || parse(read()));
        match loader {
            Ok(handle) => Self::Loading(handle),
            Err(_) => Self::Unloaded,
        }
    }

    /// The table if it is ready, without waiting.
    pub fn ready(&mut self) -> Option<&Result<KernelSymbols, String>> {
        if matches!(self, Self::Loading(handle) if handle.is_finished()) {
            self.join();
        }
        match self {
            Self::Ready(table) => Some(table),
            _ => None,
        }
    }

    /// The table, loading it now (`read`) if nobody started, or waiting for the loader.
    pub fn wait(
        &mut self,
        read: impl FnOnce() -> std::io::Result<String>,
    ) -> &Result<KernelSymbols, String> {
        match self {
            Self::Unloaded => *self = Self::Ready(parse(read())),
            Self::Loading(_) => self.join(),
            Self::Ready(_) => {}
        }
        match self {
            Self::Ready(table) => table,
            _ => unreachable!("just made ready"),
        }
    }

    fn join(&mut self) {
        if let Self::Loading(handle) = std::mem::replace(self, Self::Unloaded) {
            let table = handle
                .join()
                .unwrap_or_else(|_| Err("the kallsyms loader panicked".into()));
            *self = Self::Ready(table);
        }
    }
}

fn parse(text: std::io::Result<String>) -> Result<KernelSymbols, String> {
    text.map(|text| KernelSymbols::parse(&text))
        .map_err(|err| format!("cannot read /proc/kallsyms: {err}"))
}
