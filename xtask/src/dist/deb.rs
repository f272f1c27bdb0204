//! The .deb, written with dpkg-deb from a staged tree. Its descriptive fields come from
//! `[package.metadata.deb]` in oomreap-userspace/Cargo.toml (cargo-deb's names); the files are
//! those `dist` built: the static binary, man pages, completions, and the systemd unit with its
//! /etc/default file (a conffile). The unit is installed, never enabled or started.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{Arch, Release, binary_name};
use crate::command::run as run_cmd;

/// Where each generated completion file goes, as Debian's shells look for them.
const COMPLETIONS: [(&str, &str); 3] = [
    (
        "oomreap.bash",
        "usr/share/bash-completion/completions/oomreap",
    ),
    ("_oomreap", "usr/share/zsh/vendor-completions/_oomreap"),
    (
        "oomreap.fish",
        "usr/share/fish/vendor_completions.d/oomreap.fish",
    ),
];

/// Reloads systemd after the unit appears or goes, so `systemctl start oomreap` sees it;
/// enables nothing.
const RELOAD_SYSTEMD: &str = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n    systemctl daemon-reload >/dev/null || true\nfi\n";

/// Writes `NAME_VERSION_ARCH.deb` for `arch` into `out`.
pub fn build(
    workspace: &Path,
    out: &Path,
    release: &Release,
    arch: Arch,
) -> anyhow::Result<PathBuf> {
    let meta = super::package_metadata(workspace)?;
    let deb_meta = &meta["metadata"]["deb"];
    let field = |name: &str| {
        deb_meta[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("[package.metadata.deb] has no {name}"))
    };
    let name = field("name")?;
    let root = out.join(format!("deb-root-{}", arch.name));
    let stage = Stage(&root);

    stage.copy(&out.join(binary_name(arch)), "usr/bin/oomreap", 0o755)?;
    for page in std::fs::read_dir(out.join("man"))? {
        let page = page?.path();
        let file = page.file_name().context("page name")?.to_string_lossy();
        let gz = stage.copy(&page, &format!("usr/share/man/man1/{file}"), 0o644)?;
        // Debian compresses man pages; -n keeps timestamps out, for reproducible packages.
        run_cmd(Command::new("gzip").args(["-9nf"]).arg(&gz))?;
    }
    for (from, to) in COMPLETIONS {
        stage.copy(&out.join("completions").join(from), to, 0o644)?;
    }
    let deploy = workspace.join("deploy/systemd");
    stage.copy(
        &deploy.join("oomreap.service"),
        "usr/lib/systemd/system/oomreap.service",
        0o644,
    )?;
    stage.copy(
        &deploy.join("oomreap.default"),
        "etc/default/oomreap",
        0o644,
    )?;
    stage.write(
        &format!("usr/share/doc/{name}/copyright"),
        &copyright(&meta, workspace)?,
        0o644,
    )?;

    let installed_kib = tree_size(&root)?.div_ceil(1024);
    let description = field("extended-description")?
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .".to_owned()
            } else {
                format!(" {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {maintainer}\n\
         Installed-Size: {installed_kib}\nSection: {section}\nPriority: {priority}\n\
         Homepage: {homepage}\nDescription: {summary}\n{description}\n",
        version = release.version,
        arch = arch.name,
        maintainer = field("maintainer")?,
        section = field("section")?,
        priority = field("priority")?,
        homepage = meta["repository"].as_str().unwrap_or_default(),
        summary = meta["description"].as_str().unwrap_or_default(),
    );
    stage.write("DEBIAN/control", &control, 0o644)?;
    stage.write("DEBIAN/conffiles", "/etc/default/oomreap\n", 0o644)?;
    stage.write("DEBIAN/postinst", RELOAD_SYSTEMD, 0o755)?;
    stage.write("DEBIAN/postrm", RELOAD_SYSTEMD, 0o755)?;

    let deb = out.join(format!("{name}_{}_{}.deb", release.version, arch.name));
    run_cmd(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&deb)
            // dpkg-deb clamps every file's time to this: the same commit, the same bytes.
            .env("SOURCE_DATE_EPOCH", release.epoch.to_string()),
    )
    .context("dpkg-deb (Debian's dpkg) builds the package")?;
    std::fs::remove_dir_all(&root)?;
    Ok(deb)
}

/// The staged package tree.
struct Stage<'a>(&'a Path);

impl Stage<'_> {
    fn copy(&self, from: &Path, to: &str, mode: u32) -> anyhow::Result<PathBuf> {
        let bytes =
            std::fs::read(from).with_context(|| format!("failed to read {}", from.display()))?;
        self.write_bytes(to, &bytes, mode)
    }

    fn write(&self, to: &str, text: &str, mode: u32) -> anyhow::Result<PathBuf> {
        self.write_bytes(to, text.as_bytes(), mode)
    }

    fn write_bytes(&self, to: &str, bytes: &[u8], mode: u32) -> anyhow::Result<PathBuf> {
        let path = self.0.join(to);
        let parent = path.parent().context("a staged file has a folder")?;
        std::fs::create_dir_all(parent)?;
        std::fs::write(&path, bytes)
            .with_context(|| format!("failed to write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(path)
    }
}

/// Bytes of the regular files under `dir`.
fn tree_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// debian/copyright in the machine-readable format: user space under MIT or Apache-2.0, the
/// embedded kernel programs under GPL-2.0 (Debian ships both long texts in common-licenses).
fn copyright(meta: &serde_json::Value, workspace: &Path) -> anyhow::Result<String> {
    let mit = std::fs::read_to_string(workspace.join("LICENSE-MIT"))?;
    let mit: String = mit
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .\n".to_owned()
            } else {
                format!(" {l}\n")
            }
        })
        .collect();
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: oomreap\nSource: {source}\n\n\
         Files: *\nCopyright: the oomreap developers\n\
         License: (MIT or Apache-2.0) and GPL-2.0\n\
         Comment: The kernel programs embedded in usr/bin/oomreap (oomreap-ebpf) are GPL-2.0;\n \
         everything else is MIT or Apache-2.0, at your option. On Debian systems the full\n \
         texts of GPL-2.0 and Apache-2.0 are in /usr/share/common-licenses.\n\n\
         License: MIT\n{mit}\n\
         License: Apache-2.0\n On Debian systems, the full text is in \
         /usr/share/common-licenses/Apache-2.0.\n\n\
         License: GPL-2.0\n On Debian systems, the full text is in \
         /usr/share/common-licenses/GPL-2.\n",
        source = meta["repository"].as_str().unwrap_or_default(),
    ))
}
