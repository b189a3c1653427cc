//! Who else has a store file open, as Linux's `/proc/locks` lists it: `status` tells a
//! shared store from a free one by it, `salvage` an owner marker that still holds its file
//! from one a crash left behind, and an exclusive open the processes it waits for.

use std::path::Path;

/// Whether another process has the store file at `db` open: every redb handle, reading or
/// writing, holds file locks on it while open, which Linux lists in `/proc/locks` by device
/// and inode. This process holds none once its probe is closed (a library caller that holds
/// its own handle of the file is counted as another). `None` when that cannot be told (no
/// such list on another system, or the file cannot be looked at).
pub(crate) fn open_elsewhere(db: &Path) -> Option<bool> {
    let file = FileId::of(db)?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let me = std::process::id().to_string();
    Some(locks.lines().any(|line| file.held_in(line, &me)))
}

/// The other processes that hold locks on the store file at `db`, by pid, lowest first:
/// those `/proc/locks` names (a whole-file lock carries its taker's pid; a lock of an open
/// file description shows -1 and names nobody). Empty when none can be named.
pub(crate) fn pids_holding(db: &Path) -> Vec<u32> {
    let Some(file) = FileId::of(db) else {
        return Vec::new();
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    let mut pids: Vec<u32> = locks
        .lines()
        .filter_map(|line| file.holder_in(line, &me))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A file as `/proc/locks` names it: its inode, and the devices that may stand for its file
/// system there (the one `stat` gives, and its mount's; they differ on btrfs subvolumes and
/// some overlay file systems, and `/proc/locks` gives the mount's).
struct FileId {
    ino: u64,
    devices: Vec<(u64, u64)>,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let dev = meta.dev();
        // glibc's split of a device number into major and minor.
        let mut devices = vec![(
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        )];
        if let Some(mounted) = mount_device(path) {
            devices.push(mounted);
        }
        Some(FileId {
            ino: meta.ino(),
            devices,
        })
    }

    /// Whether `line` of `/proc/locks` is a lock on this file held by a process other than
    /// `me` ("1: FLOCK  ADVISORY  READ 1234 fe:00:10084895 0 EOF"; an open file
    /// description's lock shows pid -1; a blocked waiter's line, "1: -> FLOCK …", holds
    /// nothing).
    fn held_in(&self, line: &str, me: &str) -> bool {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return false;
        }
        let Some(pos) = fields.iter().position(|f| f.matches(':').count() == 2) else {
            return false;
        };
        let mut id = fields[pos].split(':');
        let (Some(major), Some(minor), Some(ino)) = (id.next(), id.next(), id.next()) else {
            return false;
        };
        let device = (
            u64::from_str_radix(major, 16).ok(),
            u64::from_str_radix(minor, 16).ok(),
        );
        ino.parse::<u64>() == Ok(self.ino)
            && self
                .devices
                .iter()
                .any(|&(ma, mi)| device == (Some(ma), Some(mi)))
            && pos > 0
            && fields[pos - 1] != me
    }

    /// The pid of the process that holds the lock of `line` on this file, when it is
    /// another than `me` and named (not -1).
    fn holder_in(&self, line: &str, me: &str) -> Option<u32> {
        if !self.held_in(line, me) {
            return None;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let pos = fields.iter().position(|f| f.matches(':').count() == 2)?;
        fields[pos - 1].parse().ok()
    }
}

/// The device of the file system `path` is on, as its mount names it in
/// `/proc/self/mountinfo` (what `/proc/locks` shows), found by the mount id `statx` gives.
fn mount_device(path: &Path) -> Option<(u64, u64)> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let st = statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID).ok()?;
    if st.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return None;
    }
    let id = st.stx_mnt_id.to_string();
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": id, parent,
    // major:minor (decimal).
    table.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? != id {
            return None;
        }
        let (major, minor) = fields.nth(1)?.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::FileId;

    /// Lines of `/proc/locks` as Linux writes them: a lock on the file by another process
    /// (a flock with its pid, an open file description's with -1) counts; this process's
    /// own, another inode's, another device's and a blocked waiter's do not.
    #[test]
    fn proc_locks_lines_are_read_by_device_and_inode() {
        let file = FileId {
            ino: 10084895,
            devices: vec![(0xfe, 0), (259, 0x1a5)],
        };
        let me = "4242";
        let held = |line: &str| file.held_in(line, me);
        assert!(held("1: FLOCK  ADVISORY  READ 19754 fe:00:10084895 0 EOF"));
        assert!(held(
            "2: OFDLCK ADVISORY  READ -1 fe:00:10084895 4611686018427387906 4611686018427387906"
        ));
        assert!(held("3: POSIX  ADVISORY  WRITE 77 103:1a5:10084895 0 EOF"));
        assert!(!held("4: FLOCK  ADVISORY  READ 4242 fe:00:10084895 0 EOF"));
        assert!(!held("5: FLOCK  ADVISORY  READ 19754 fe:00:10084896 0 EOF"));
        assert!(!held("6: FLOCK  ADVISORY  READ 19754 fe:01:10084895 0 EOF"));
        assert!(!held(
            "7: -> FLOCK  ADVISORY  WRITE 19755 fe:00:10084895 0 EOF"
        ));
        assert!(!held("8: LEASE  ACTIVE    READ 19754 <none>:0 0 EOF"));
        assert!(!held(""));
        // Only a lock that carries its taker's pid names it.
        let holder = |line: &str| file.holder_in(line, me);
        assert_eq!(
            holder("1: FLOCK  ADVISORY  READ 19754 fe:00:10084895 0 EOF"),
            Some(19754)
        );
        assert_eq!(
            holder(
                "2: OFDLCK ADVISORY  READ -1 fe:00:10084895 4611686018427387906 4611686018427387906"
            ),
            None
        );
        assert_eq!(
            holder("4: FLOCK  ADVISORY  READ 4242 fe:00:10084895 0 EOF"),
            None
        );
    }
}
