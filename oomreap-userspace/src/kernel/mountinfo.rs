//! Lines of /proc/PID/mountinfo, as far as oomreap reads them.

/// One mount: `ID PARENT MAJOR:MINOR ROOT MOUNT_POINT … - FSTYPE SOURCE …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mount<'a> {
    /// `major:minor`, in decimal.
    pub device: &'a str,
    pub mount_point: &'a str,
    pub fstype: &'a str,
}

/// The mounts of a mountinfo text (malformed lines left out).
pub fn mounts(text: &str) -> impl Iterator<Item = Mount<'_>> {
    text.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = left.split_whitespace();
        Some(Mount {
            device: fields.nth(2)?,
            mount_point: fields.nth(1)?,
            fstype: right.split_whitespace().next()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gives_its_device_mount_point_and_type() {
        let text = "30 22 0:26 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw\nnonsense\n";
        assert_eq!(
            mounts(text).collect::<Vec<_>>(),
            vec![Mount {
                device: "0:26",
                mount_point: "/dev/shm",
                fstype: "tmpfs",
            }]
        );
    }
}
