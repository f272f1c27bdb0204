//! The container image as an OCI archive (image layout in a tar: `podman load -i`,
//! `skopeo copy oci-archive:…`), written from `deploy/container/Containerfile` without a
//! container engine: the Containerfile is the one description of the image, and a test builds
//! it with podman too and compares. Only what a scratch image needs is understood: FROM
//! scratch, ARG, COPY, LABEL, EXPOSE, ENTRYPOINT, CMD; anything else is refused by name.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Arch, Release, tar::Tar};

/// The Containerfile, from the workspace root.
pub const CONTAINERFILE: &str = "deploy/container/Containerfile";

/// What a Containerfile says the image is.
#[derive(Debug, Default, PartialEq)]
pub struct ImageSpec {
    /// (source in the build context, absolute destination)
    pub copies: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub exposed: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl ImageSpec {
    /// Reads a Containerfile, substituting `${NAME}` of its ARGs from `args`.
    pub fn parse(text: &str, args: &BTreeMap<&str, String>) -> anyhow::Result<Self> {
        let mut spec = Self::default();
        let mut declared: Vec<String> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("{CONTAINERFILE} line {}", number + 1);
            let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let mut rest = rest.trim().to_owned();
            for name in &declared {
                let value = args
                    .get(name.as_str())
                    .with_context(|| format!("{}: no value for ARG {name}", at()))?;
                rest = rest.replace(&format!("${{{name}}}"), value);
            }
            match word.to_ascii_uppercase().as_str() {
                "FROM" if rest == "scratch" => {}
                "FROM" => bail!("{}: only FROM scratch is built offline, not {rest:?}", at()),
                "ARG" => declared.push(rest),
                "COPY" => {
                    let (from, to) = rest.split_once(char::is_whitespace).with_context(|| {
                        format!("{}: COPY needs a source and a destination", at())
                    })?;
                    spec.copies.push((from.to_owned(), to.trim().to_owned()));
                }
                "LABEL" => {
                    let (key, value) = rest
                        .split_once('=')
                        .with_context(|| format!("{}: LABEL needs key=\"value\"", at()))?;
                    let value: String = serde_json::from_str(value)
                        .with_context(|| format!("{}: the LABEL value must be quoted", at()))?;
                    spec.labels.insert(key.to_owned(), value);
                }
                "EXPOSE" => spec.exposed.push(rest),
                "ENTRYPOINT" => spec.entrypoint = exec_form(&rest).with_context(at)?,
                "CMD" => spec.cmd = exec_form(&rest).with_context(at)?,
                other => bail!("{}: {other} is not built offline by cargo xtask dist", at()),
            }
        }
        Ok(spec)
    }
}

/// `["a", "b"]`: the exec form, the only one a scratch image (no shell) can run.
fn exec_form(text: &str) -> anyhow::Result<Vec<String>> {
    serde_json::from_str(text).context("ENTRYPOINT and CMD must be JSON arrays (exec form)")
}

/// The build arguments the Containerfile declares (`TARGETARCH` is the one a container
/// engine sets by itself, from the platform it builds for).
pub fn build_args(release: &Release, arch: Arch) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("VERSION", release.version.clone()),
        ("REVISION", release.revision.clone()),
        ("TARGETARCH", arch.name.to_owned()),
    ])
}

/// Writes `oomreap-VERSION-ARCH.oci.tar` for `arch` into `out`, whose files are the build
/// context.
pub fn build(
    workspace: &Path,
    out: &Path,
    release: &Release,
    arch: Arch,
) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(workspace.join(CONTAINERFILE))
        .with_context(|| format!("failed to read {CONTAINERFILE}"))?;
    let spec = ImageSpec::parse(&text, &build_args(release, arch))?;

    let mut layer = Tar::new(release.epoch);
    let mut made = std::collections::BTreeSet::new();
    for (from, to) in &spec.copies {
        let to = to.trim_start_matches('/');
        // Every parent folder once, outermost first.
        let parts: Vec<&str> = to.split('/').collect();
        for depth in 1..parts.len() {
            let dir = parts[..depth].join("/");
            if made.insert(dir.clone()) {
                layer.dir(&dir, 0o755)?;
            }
        }
        let source = out.join(from);
        let bytes = std::fs::read(&source)
            .with_context(|| format!("failed to read {} for COPY", source.display()))?;
        layer.file(to, 0o755, &bytes)?;
    }
    let layer = layer.finish();
    let layer_digest = digest(&layer);

    let created = rfc3339(release.epoch);
    let exposed: serde_json::Map<String, Value> = spec
        .exposed
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let config = json!({
        "created": created,
        "architecture": arch.name,
        "os": "linux",
        "config": {
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd,
            "ExposedPorts": exposed,
            "Labels": spec.labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": created, "created_by": format!("cargo xtask dist from {CONTAINERFILE}") }],
    });
    let config = serde_json::to_vec(&config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "platform": { "architecture": arch.name, "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": image_name(release, arch) },
        }],
    }))?;

    let mut archive = Tar::new(release.epoch);
    archive.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    archive.file("index.json", 0o644, &index)?;
    archive.dir("blobs", 0o755)?;
    archive.dir("blobs/sha256", 0o755)?;
    for blob in [&layer, &config, &manifest] {
        let name = digest(blob);
        let hex = name.trim_start_matches("sha256:");
        archive.file(&format!("blobs/sha256/{hex}"), 0o644, blob)?;
    }
    let path = out.join(format!("oomreap-{}-{}.oci.tar", release.version, arch.name));
    std::fs::write(&path, archive.finish())?;
    Ok(path)
}

/// The name the archive gives its image once loaded: `localhost/oomreap:VERSION-ARCH`, so
/// both architectures' images can be loaded side by side and joined by `podman manifest`.
pub fn image_name(release: &Release, arch: Arch) -> String {
    format!("localhost/oomreap:{}-{}", release.version, arch.name)
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", super::hex(&Sha256::digest(bytes)))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time, by coreutils' `date`.
fn rfc3339(epoch: u64) -> String {
    crate::command::output(std::process::Command::new("date").args([
        "-u",
        "-d",
        &format!("@{epoch}"),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]))
    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BTreeMap<&'static str, String> {
        let release = Release {
            version: "1.2.3".into(),
            revision: "abc".into(),
            epoch: 0,
        };
        build_args(&release, super::super::ARM64)
    }

    #[test]
    fn the_shipped_containerfile_parses() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(CONTAINERFILE),
        )
        .expect("read the Containerfile");
        let spec = ImageSpec::parse(&text, &args()).expect("parse");
        assert_eq!(
            spec.copies,
            [("oomreap-arm64".to_owned(), "/usr/bin/oomreap".to_owned())]
        );
        assert_eq!(spec.entrypoint, ["/usr/bin/oomreap"]);
        assert_eq!(spec.labels["org.opencontainers.image.version"], "1.2.3");
        assert_eq!(spec.labels["org.opencontainers.image.revision"], "abc");
        assert_eq!(spec.exposed, ["9717/tcp"]);
    }

    #[test]
    fn what_cannot_be_built_offline_is_named() {
        let err = ImageSpec::parse("FROM debian:bookworm\n", &args()).expect_err("refused");
        assert!(err.to_string().contains("only FROM scratch"), "{err}");
        let err = ImageSpec::parse("FROM scratch\nRUN true\n", &args()).expect_err("refused");
        assert!(
            err.to_string().contains("line 2: RUN is not built offline"),
            "{err}"
        );
        let err = ImageSpec::parse("FROM scratch\nCMD serve\n", &args()).expect_err("refused");
        assert!(format!("{err:#}").contains("exec form"), "{err:#}");
    }
}
