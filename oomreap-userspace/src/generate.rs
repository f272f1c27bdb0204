//! `oomreap generate man|completions DIR`: man pages and shell completions generated from the
//! flags themselves, so packages never carry a hand-written copy that drifts (hidden: it is
//! for packagers, and `cargo xtask dist` calls it).
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, GenerateWhat};

/// Writes the pages or scripts into `dir` (created if missing) and lists them on stdout.
pub fn run(what: GenerateWhat, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let before = listing(dir)?;
    match what {
        // One page per visible subcommand, `oomreap-top.1` and so on, plus `oomreap.1`.
        GenerateWhat::Man => clap_mangen::generate_to(Cli::command(), dir)
            .with_context(|| format!("failed to write man pages into {}", dir.display()))?,
        GenerateWhat::Completions => {
            use clap_complete::Shell;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut Cli::command(), "oomreap", dir)
                    .with_context(|| {
                        format!("failed to write {shell} completions into {}", dir.display())
                    })?;
            }
        }
    }
    for name in listing(dir)?.difference(&before) {
        println!("{}", dir.join(name).display());
    }
    Ok(())
}

fn listing(dir: &Path) -> anyhow::Result<std::collections::BTreeSet<std::ffi::OsString>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("failed to list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect())
}
