//! The header of a redb file, read and mended byte by byte for salvage only.
//!
//! A redb file begins with 64 bytes of layout (a magic number, a "god byte" of flags naming
//! the primary commit record, the page size and the region geometry) and two commit records
//! ("slots") of 128 bytes each: a format version, the roots of the table trees, the
//! transaction id, and a checksum of the rest. The primary slot is the latest commit; the
//! other is the one before it. One damaged byte in the primary slot (or in the layout) keeps
//! redb from opening the file at all, though every page may be intact.
//!
//! Salvage works on a byte copy of the damaged file, so it may rewrite that copy's header:
//! [`Header::mended`] puts one commit record in both slots (format version and checksum set
//! right, magic number and geometry taken from a new file where they do not read as they
//! should). Opened with recovery asked for, redb then checks every page of that commit's
//! trees against their checksums before it takes them, so a mended header that names the
//! wrong pages is refused, never read. The last resort, a record that reads as written (or
//! was told back bit for bit) opened without that check, reads pages as they come; salvage
//! screens every record it reads then, as for any damaged file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Length of the header: the layout, then the two commit records.
pub(crate) const HEADER_LEN: usize = LAYOUT_LEN + 2 * SLOT_LEN;
const LAYOUT_LEN: usize = 64;
const SLOT_LEN: usize = 128;
const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
const GOD_BYTE: usize = MAGIC.len();
const PRIMARY_BIT: u8 = 1;
const RECOVERY_REQUIRED: u8 = 2;
const TWO_PHASE_COMMIT: u8 = 4;
/// The page size and region geometry: fixed when the file is made, never rewritten.
const GEOMETRY: std::ops::Range<usize> = 12..24;
/// The number of full regions and the data pages of the last one: rewritten as the file
/// grows, recomputed from its length on recovery.
const FULL_REGIONS: usize = 24;
const TRAILING_PAGES: usize = 28;
/// The most regions a file has (the region index is 20 bits).
const MAX_REGIONS: u64 = 1 << 20;
/// The only file format redb 4 reads.
const FORMAT: u8 = 3;
// Within a slot: version, whether each root is set, the roots, the transaction id, the
// checksum of everything before it.
const USER_ROOT_SET: usize = 1;
const SYSTEM_ROOT_SET: usize = 2;
const ROOT_LEN: usize = 32;
const USER_ROOT: usize = 8;
const SYSTEM_ROOT: usize = USER_ROOT + ROOT_LEN;
const TRANSACTION_ID: usize = 104;
const CHECKSUM: usize = SLOT_LEN - 16;

/// Which of the header's two commit records a mended header keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitRecord {
    /// The primary one: the latest commit.
    Latest,
    /// The other one: the commit before it.
    Previous,
}

/// The header of a redb file, as read.
#[derive(Clone)]
pub(crate) struct Header {
    bytes: [u8; HEADER_LEN],
}

impl Header {
    /// Reads the header of the file at `path`; `None` when the file is too short to hold one.
    ///
    /// # Errors
    /// `Io` when the file cannot be read.
    pub(crate) fn read(path: &Path) -> Result<Option<Header>> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut bytes = [0; HEADER_LEN];
        match file.read_exact(&mut bytes) {
            Ok(()) => Ok(Some(Header { bytes })),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes this header over the first bytes of the file at `path`, and syncs it. A
    /// symlink at `path` is not followed (whoever may write the data dir could point one at
    /// another file of the user running redkeep).
    ///
    /// # Errors
    /// `Io` when the file cannot be written (also for a symlink).
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |e| Error::io(format!("writing the header of {}", path.display()), e);
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(flags.bits() as i32)
            .open(path)
            .map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&self.bytes).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The slot holding `record`. The latest commit is the one of the greater transaction
    /// id when both records are sound (the god byte, which no checksum covers, may be the
    /// damaged byte), else the one the god byte names.
    fn slot_index(&self, record: CommitRecord) -> usize {
        let mut primary = usize::from(self.bytes[GOD_BYTE] & PRIMARY_BIT != 0);
        let sound = |i: usize| {
            let slot = &self.bytes[LAYOUT_LEN + i * SLOT_LEN..LAYOUT_LEN + (i + 1) * SLOT_LEN];
            slot[0] == FORMAT && slot[CHECKSUM..] == checksum(&slot[..CHECKSUM])
        };
        if sound(0) && sound(1) {
            let id = |i: usize| {
                let at = LAYOUT_LEN + i * SLOT_LEN + TRANSACTION_ID;
                let mut id = [0; 8];
                id.copy_from_slice(&self.bytes[at..at + 8]);
                u64::from_le_bytes(id)
            };
            match id(0).cmp(&id(1)) {
                std::cmp::Ordering::Greater => primary = 0,
                std::cmp::Ordering::Less => primary = 1,
                std::cmp::Ordering::Equal => {}
            }
        }
        match record {
            CommitRecord::Latest => primary,
            CommitRecord::Previous => 1 - primary,
        }
    }

    fn slot(&self, record: CommitRecord) -> &[u8] {
        let at = LAYOUT_LEN + self.slot_index(record) * SLOT_LEN;
        &self.bytes[at..at + SLOT_LEN]
    }

    /// Whether a commit record reads as redb wrote it: its format, and its checksum.
    pub(crate) fn sound(&self, record: CommitRecord) -> bool {
        let slot = self.slot(record);
        slot[0] == FORMAT && slot[CHECKSUM..] == checksum(&slot[..CHECKSUM])
    }

    /// The transaction id a commit record names (read as is: it may be damaged).
    pub(crate) fn transaction(&self, record: CommitRecord) -> u64 {
        let slot = self.slot(record);
        let mut id = [0; 8];
        id.copy_from_slice(&slot[TRANSACTION_ID..TRANSACTION_ID + 8]);
        u64::from_le_bytes(id)
    }

    /// Whether a header could be mended into one redb reads: one of its commit records is
    /// sound (an intact record of a redb file, whatever became of the rest). Asked of a
    /// [`corrected`](Header::corrected) header, records told back count.
    pub(crate) fn mendable(&self) -> bool {
        self.sound(CommitRecord::Latest) || self.sound(CommitRecord::Previous)
    }

    /// This header with each commit record whose checksum does not match mended where one
    /// or two flipped bits explain it (the checksum, 128 bits, tells the record as written
    /// from any other within two bits of it).
    pub(crate) fn corrected(&self) -> Header {
        let mut out = self.clone();
        for i in 0..2 {
            let at = LAYOUT_LEN + i * SLOT_LEN;
            let mut slot = [0; SLOT_LEN];
            slot.copy_from_slice(&self.bytes[at..at + SLOT_LEN]);
            if let Some(mended) = corrected(&slot) {
                out.bytes[at..at + SLOT_LEN].copy_from_slice(&mended);
            }
        }
        out
    }

    /// A header holding `record` in both slots, its format version and checksum set right;
    /// the magic number taken from `fresh` (the header of a new file), and so is the
    /// geometry when `fresh_geometry`.
    ///
    /// With `verify`, the header asks for recovery and drops two-phase commit: opening the
    /// file then checks every page of the commit's trees against their checksums and
    /// rebuilds the allocator state from them (a file so opened needs to be writable).
    /// Without, the flags stay as they were, for a file whose pages are read as they come.
    pub(crate) fn mended(
        &self,
        record: CommitRecord,
        verify: bool,
        fresh: &Header,
        fresh_geometry: bool,
    ) -> Header {
        let mut out = self.clone();
        out.bytes[..GOD_BYTE].copy_from_slice(&MAGIC);
        let flags = self.bytes[GOD_BYTE] & !PRIMARY_BIT;
        out.bytes[GOD_BYTE] = if verify {
            (flags | RECOVERY_REQUIRED) & !TWO_PHASE_COMMIT
        } else {
            flags
        };
        if fresh_geometry {
            out.bytes[GEOMETRY].copy_from_slice(&fresh.bytes[GEOMETRY]);
        }
        let mut slot = [0; SLOT_LEN];
        slot.copy_from_slice(self.slot(record));
        slot[0] = FORMAT;
        // redb writes a root that is not set as zeros.
        for (flag, root) in [(USER_ROOT_SET, USER_ROOT), (SYSTEM_ROOT_SET, SYSTEM_ROOT)] {
            slot[flag] = u8::from(slot[root..root + ROOT_LEN].iter().any(|b| *b != 0));
        }
        let sum = checksum(&slot[..CHECKSUM]);
        slot[CHECKSUM..].copy_from_slice(&sum);
        for i in 0..2 {
            let at = LAYOUT_LEN + i * SLOT_LEN;
            out.bytes[at..at + SLOT_LEN].copy_from_slice(&slot);
        }
        out
    }

    /// Whether a commit record names a tree of tables (a store redkeep wrote always has
    /// one; a record mended out of zeros names none, which would pass for an empty store).
    pub(crate) fn has_tables(&self, record: CommitRecord) -> bool {
        self.slot(record)[USER_ROOT..USER_ROOT + ROOT_LEN]
            .iter()
            .any(|b| *b != 0)
    }

    /// Whether the header keeps redb from reading the latest commit as it was written (a
    /// magic number or geometry unlike `fresh`'s, a latest commit record that is not sound):
    /// what a mended header may get past.
    pub(crate) fn damaged(&self, fresh: &Header) -> bool {
        self.layout_damaged(fresh) || !self.sound(CommitRecord::Latest)
    }

    /// Whether the region counts of a file closed cleanly (which redb trusts then) are out
    /// of redb's bounds: redb refuses the file, though recomputing them from its length (as
    /// a mended header asks redb to) may read it whole. (Counts that give a length other than
    /// the file's are not said here: redb recomputes those itself, and a file cut short
    /// looks so.)
    pub(crate) fn counts_damaged(&self) -> bool {
        self.bytes[GOD_BYTE] & RECOVERY_REQUIRED == 0 && self.stated_len().is_none()
    }

    /// The length the region counts of a file closed cleanly give it; `None` when it was
    /// not closed cleanly (a writer has it open, or was killed: the counts may lag the file
    /// then) or they are out of bounds.
    fn stated_len(&self) -> Option<u64> {
        if self.bytes[GOD_BYTE] & RECOVERY_REQUIRED != 0 {
            return None;
        }
        let u32_at = |at: usize| {
            let mut b = [0; 4];
            b.copy_from_slice(&self.bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(b))
        };
        let (page, header_pages, region_pages) = (u32_at(12), u32_at(16), u32_at(20));
        let (full, trailing) = (u32_at(FULL_REGIONS), u32_at(TRAILING_PAGES));
        if trailing > region_pages || full > MAX_REGIONS {
            return None;
        }
        // The first page (this header), each full region, then the trailing one if any.
        let trailing_pages = if trailing > 0 {
            header_pages + trailing
        } else {
            0
        };
        (1 + full * (header_pages + region_pages) + trailing_pages).checked_mul(page)
    }

    /// Whether the magic number or the geometry read otherwise than `fresh`'s: redb would
    /// read every page at the wrong place, or not at all.
    pub(crate) fn layout_damaged(&self, fresh: &Header) -> bool {
        self.bytes[..GOD_BYTE] != MAGIC || !self.same_geometry(fresh)
    }

    /// Whether the geometry reads as that of `fresh`.
    pub(crate) fn same_geometry(&self, fresh: &Header) -> bool {
        self.bytes[GEOMETRY] == fresh.bytes[GEOMETRY]
    }
}

/// Why redb refuses the file at `path` as being of an older file format (`version`): one
/// of its commit records is damaged when the other reads as format 3; else the file is
/// older than any redkeep store.
pub(crate) fn older_format(path: &Path, version: u8) -> String {
    let header = Header::read(path).ok().flatten();
    if header.is_some_and(|h| h.sound(CommitRecord::Latest) || h.sound(CommitRecord::Previous)) {
        format!(
            "a commit record in its header is damaged (it names file format {version}, the other \
             one format {FORMAT})"
        )
    } else {
        format!(
            "it is a redb file of format {version}, older than any redkeep store (they are of \
             format {FORMAT})"
        )
    }
}

/// The header of a new, empty redb file, made in memory: where a damaged header's magic
/// number and geometry are taken from.
///
/// # Errors
/// `Storage` when redb cannot make one.
pub(crate) fn fresh() -> Result<Header> {
    static FRESH: std::sync::OnceLock<Header> = std::sync::OnceLock::new();
    if let Some(h) = FRESH.get() {
        return Ok(h.clone());
    }
    let made = make_fresh()?;
    Ok(FRESH.get_or_init(|| made).clone())
}

/// Why the file at `path` is no redb file redkeep made, as far as its first bytes tell
/// (race-free: what they hold is never rewritten once the file is made): cut shorter than a
/// header, or a magic number that is redb's with a geometry that is not. `None` when they
/// read as they should, or cannot be read (the open that follows says why).
pub(crate) fn first_bytes_problem(path: &Path) -> Option<String> {
    let len = std::fs::metadata(path).ok()?.len();
    if len > 0 && len < HEADER_LEN as u64 {
        let mut start = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAGIC.len() as u64)
            .read_to_end(&mut start)
            .ok()?;
        // What begins otherwise than redb's magic number (or too short to tell) is no redb
        // file: the open says so.
        return (start == MAGIC).then(|| {
            format!(
                "the file is cut short ({len} bytes, less than the {HEADER_LEN} of a redb \
                 header)"
            )
        });
    }
    let found = Header::read(path).ok()??;
    let fresh = fresh().ok()?;
    (found.bytes[..GOD_BYTE] == MAGIC && !found.same_geometry(&fresh))
        .then(|| "its header's page geometry is damaged".to_string())
}

/// The largest file [`unwritten`] reads: a new file redb has not written yet is some 72 KiB
/// (a larger one was grown by writes, which a store that was never written has not had).
const UNWRITTEN_MAX: u64 = 1 << 20;

/// What the file at `path` holds when no store was ever written in it, as a phrase (`every
/// byte is zero`); `None` when it may hold anything else, or cannot be read. Such a file is
/// what redb's first writes of a new file leave when they do not all reach the disk (a
/// kill, a full disk, a failed sync): it is made 0 bytes, then grown to its first size in
/// zeros, then given a header whose magic number is zero until that header is synced. So
/// it is empty, or every byte is zero, or its only bytes are such a header (a layout
/// without a magic number, two sound commit records that name no tree) with zeros after it.
/// A file that could hold a record is never one: records live in the pages after the
/// header, which are all zero here.
pub(crate) fn unwritten(path: &Path) -> Option<&'static str> {
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len == 0 {
        return Some("0 bytes");
    }
    if len > UNWRITTEN_MAX {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(UNWRITTEN_MAX).read_to_end(&mut bytes).ok()?;
    let head = bytes.len().min(HEADER_LEN);
    if bytes[head..].iter().any(|b| *b != 0) {
        return None;
    }
    if bytes[..head].iter().all(|b| *b == 0) {
        return Some("every byte is zero");
    }
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let mut header = Header {
        bytes: [0; HEADER_LEN],
    };
    header.bytes.copy_from_slice(&bytes[..HEADER_LEN]);
    let no_tree = |record| {
        let slot = header.slot(record);
        header.sound(record) && slot[USER_ROOT_SET] == 0 && slot[SYSTEM_ROOT_SET] == 0
    };
    (header.bytes[..GOD_BYTE].iter().all(|b| *b == 0)
        && no_tree(CommitRecord::Latest)
        && no_tree(CommitRecord::Previous))
    .then_some(
        "only the header redb writes before its first sync, without magic number or tables, \
         then zeros",
    )
}

/// Why the file at `path`, closed cleanly, is shorter than its header says (it was cut
/// short, or its region counts are damaged); `None` when it is not, or that cannot be told.
/// While a writer has the file open the header may say it was not closed cleanly, and
/// nothing is told from its counts. The header is read twice through one handle, with the
/// length taken between: a header that changed meanwhile (a writer closing) tells nothing,
/// and one that did not was written after the file grew to it (redb grows the file before
/// it records the size, and records a smaller size before it shrinks the file).
pub(crate) fn cut_short(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut first = [0; HEADER_LEN];
    file.read_exact(&mut first).ok()?;
    let len = file.metadata().ok()?.len();
    let mut again = [0; HEADER_LEN];
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_exact(&mut again).ok()?;
    if first != again {
        return None;
    }
    let stated = Header { bytes: first }.stated_len()?;
    (stated > len).then(|| {
        format!(
            "the file is {len} bytes, shorter than the {stated} its header gives: it was cut \
             short, or its header is damaged"
        )
    })
}

/// Makes the header [`fresh`] keeps.
fn make_fresh() -> Result<Header> {
    let memory = Memory(std::sync::Arc::new(redb::backends::InMemoryBackend::new()));
    let kept = memory.0.clone();
    super::contain("making a new file in memory", || {
        redb::Builder::new()
            .create_with_backend(memory)
            .map(drop)
            .map_err(|e| Error::storage("making a new file in memory", e))
    })?;
    let mut bytes = [0; HEADER_LEN];
    redb::StorageBackend::read(&*kept, 0, &mut bytes)
        .map_err(|e| Error::io("reading a new file in memory", e))?;
    Ok(Header { bytes })
}

/// An in-memory backend whose bytes stay readable once redb lets it go.
#[derive(Debug)]
struct Memory(std::sync::Arc<redb::backends::InMemoryBackend>);

impl redb::StorageBackend for Memory {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}

/// A commit record whose checksum does not match, with the one or two flipped bits that
/// make it match flipped back. `None` when it matches already, or no such bits are found
/// (then the damage is larger, or in the checksum itself).
fn corrected(slot: &[u8; SLOT_LEN]) -> Option<[u8; SLOT_LEN]> {
    let sum = &slot[CHECKSUM..];
    if checksum(&slot[..CHECKSUM]) == sum {
        return None;
    }
    let mut data = [0; CHECKSUM];
    data.copy_from_slice(&slot[..CHECKSUM]);
    let bits = CHECKSUM * 8;
    let flip = |d: &mut [u8; CHECKSUM], bit: usize| d[bit / 8] ^= 1 << (bit % 8);
    for first in 0..bits {
        flip(&mut data, first);
        if checksum(&data) == sum {
            return Some(with_checksum(&data, sum));
        }
        for second in first + 1..bits {
            flip(&mut data, second);
            let matched = checksum(&data) == sum;
            flip(&mut data, second);
            if matched {
                flip(&mut data, second);
                return Some(with_checksum(&data, sum));
            }
        }
        flip(&mut data, first);
    }
    None
}

fn with_checksum(data: &[u8; CHECKSUM], sum: &[u8]) -> [u8; SLOT_LEN] {
    let mut slot = [0; SLOT_LEN];
    slot[..CHECKSUM].copy_from_slice(data);
    slot[CHECKSUM..].copy_from_slice(sum);
    slot
}

/// redb's checksum of a commit record: XXH3-128, seed 0, little-endian.
fn checksum(data: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128_with_seed(data, 0).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let db = redb::Database::create(&path).unwrap();
        let t: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
        for i in 0..3 {
            let tx = db.begin_write().unwrap();
            tx.open_table(t).unwrap().insert(i, i).unwrap();
            tx.commit().unwrap();
        }
        drop(db);
        (dir, path)
    }

    /// A header is never written through a symlink: the file it points at stays as it was.
    #[test]
    fn a_header_is_not_written_through_a_symlink() {
        let (dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, vec![7u8; 8192]).unwrap();
        let link = dir.path().join("link.redb");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        assert!(matches!(h.write(&link), Err(Error::Io { .. })));
        assert_eq!(std::fs::read(&other).unwrap(), vec![7u8; 8192]);
        h.write(&path).unwrap();
    }

    #[test]
    fn a_written_header_has_two_sound_records_and_a_later_latest_one() {
        let (_dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        assert!(h.sound(CommitRecord::Latest));
        assert!(h.sound(CommitRecord::Previous));
        assert!(h.transaction(CommitRecord::Latest) > h.transaction(CommitRecord::Previous));
    }

    #[test]
    fn one_flipped_bit_makes_a_record_unsound_and_mending_makes_it_sound_again() {
        let (_dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        let mut damaged = h.clone();
        let at = LAYOUT_LEN + damaged.slot_index(CommitRecord::Latest) * SLOT_LEN + 20;
        damaged.bytes[at] ^= 4;
        assert!(!damaged.sound(CommitRecord::Latest));
        assert!(damaged.mendable());
        let mended = damaged.mended(CommitRecord::Previous, true, &h, false);
        assert!(mended.sound(CommitRecord::Latest));
        assert!(mended.sound(CommitRecord::Previous));
        assert_eq!(
            mended.transaction(CommitRecord::Latest),
            h.transaction(CommitRecord::Previous)
        );
    }

    #[test]
    fn one_or_two_flipped_bits_of_a_record_are_flipped_back() {
        let (_dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        let at = LAYOUT_LEN + h.slot_index(CommitRecord::Latest) * SLOT_LEN;
        for flips in [
            &[(9, 0)][..],
            &[(0, 1)],
            &[(20, 7), (105, 2)],
            &[(3, 0), (3, 5)],
        ] {
            let mut damaged = h.clone();
            for &(byte, bit) in flips {
                damaged.bytes[at + byte] ^= 1 << bit;
            }
            assert!(!damaged.sound(CommitRecord::Latest), "{flips:?}");
            let mended = damaged
                .corrected()
                .mended(CommitRecord::Latest, true, &h, false);
            assert_eq!(
                mended.slot(CommitRecord::Latest),
                h.slot(CommitRecord::Latest),
                "{flips:?}"
            );
        }
        // Three bits are past mending: the record keeps them, with a checksum of its own.
        let mut damaged = h.clone();
        for byte in [8, 9, 10] {
            damaged.bytes[at + byte] ^= 1;
        }
        let mended = damaged
            .corrected()
            .mended(CommitRecord::Latest, true, &h, false);
        assert_ne!(
            mended.slot(CommitRecord::Latest),
            h.slot(CommitRecord::Latest)
        );
        assert!(mended.sound(CommitRecord::Latest));
    }

    #[test]
    fn a_new_file_in_memory_has_the_magic_and_geometry_of_one_on_disk() {
        let (_dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        let fresh = fresh().unwrap();
        assert!(!h.layout_damaged(&fresh));
        let mut damaged = h.clone();
        damaged.bytes[13] ^= 1;
        assert!(damaged.layout_damaged(&fresh) && damaged.damaged(&fresh));
        let mended = damaged.mended(CommitRecord::Latest, true, &fresh, true);
        assert!(!mended.layout_damaged(&fresh));
    }

    #[test]
    fn a_checked_header_asks_for_recovery_without_two_phase_commit_and_one_record() {
        let (_dir, path) = new_file();
        let mut h = Header::read(&path).unwrap().unwrap();
        h.bytes[GOD_BYTE] |= TWO_PHASE_COMMIT;
        let checked = h.mended(CommitRecord::Previous, true, &h, false);
        let god = checked.bytes[GOD_BYTE];
        assert!(
            god & RECOVERY_REQUIRED != 0 && god & TWO_PHASE_COMMIT == 0,
            "{god:#x}"
        );
        assert_eq!(
            checked.slot(CommitRecord::Latest),
            checked.slot(CommitRecord::Previous)
        );
        assert_eq!(
            checked.transaction(CommitRecord::Latest),
            h.transaction(CommitRecord::Previous)
        );
        // Read as it comes: the flags stay as they were.
        let as_is = h.mended(CommitRecord::Latest, false, &h, false);
        assert_eq!(as_is.bytes[GOD_BYTE], h.bytes[GOD_BYTE] & !PRIMARY_BIT);
    }

    #[test]
    fn the_latest_record_is_the_later_transaction_whatever_the_god_byte_says() {
        let (_dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        let mut flipped = h.clone();
        flipped.bytes[GOD_BYTE] ^= PRIMARY_BIT;
        assert_eq!(
            flipped.transaction(CommitRecord::Latest),
            h.transaction(CommitRecord::Latest)
        );
        // With the later record damaged past its checksum, the god byte decides.
        let at = LAYOUT_LEN + h.slot_index(CommitRecord::Latest) * SLOT_LEN;
        for i in [9, 10, 11] {
            flipped.bytes[at + i] ^= 1;
        }
        assert_eq!(
            flipped.transaction(CommitRecord::Latest),
            h.transaction(CommitRecord::Previous)
        );
    }

    #[test]
    fn counts_out_of_bounds_are_damage_and_a_file_shorter_than_they_say_is_cut_short() {
        let (dir, path) = new_file();
        let h = Header::read(&path).unwrap().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(h.stated_len(), Some(len));
        assert!(!h.counts_damaged());
        assert!(cut_short(&path).is_none());
        for (byte, bit) in [(27, 7), (31, 6)] {
            let mut damaged = h.clone();
            damaged.bytes[byte] ^= 1 << bit;
            assert!(damaged.counts_damaged(), "{byte} {bit}");
            // Recovery recomputes them: nothing to say.
            damaged.bytes[GOD_BYTE] |= RECOVERY_REQUIRED;
            assert!(!damaged.counts_damaged(), "{byte} {bit}");
        }
        // A copy without its last page is cut short; one left open by a writer (recovery
        // asked for) tells nothing.
        let bytes = std::fs::read(&path).unwrap();
        let short = dir.path().join("short.redb");
        std::fs::write(&short, &bytes[..bytes.len() - 4096]).unwrap();
        assert!(cut_short(&short).is_some_and(|r| r.contains("shorter than the")));
        let mut open = bytes[..bytes.len() - 4096].to_vec();
        open[GOD_BYTE] |= RECOVERY_REQUIRED;
        std::fs::write(&short, &open).unwrap();
        assert!(cut_short(&short).is_none());
    }

    #[test]
    fn the_stated_length_is_the_file_length_as_it_grows_and_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        let t: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
        let stated = || Header::read(&path).unwrap().unwrap().stated_len();
        let len = || std::fs::metadata(&path).unwrap().len();
        let value = vec![7u8; 2000];
        for round in 0..3u64 {
            let mut db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut table = tx.open_table(t).unwrap();
                for i in 0..3000 {
                    table.insert(round * 10_000 + i, &value[..]).unwrap();
                }
            }
            tx.commit().unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut table = tx.open_table(t).unwrap();
                for i in 0..2500 {
                    table.remove(round * 10_000 + i).unwrap();
                }
            }
            tx.commit().unwrap();
            db.compact().unwrap();
            drop(db);
            assert_eq!(stated(), Some(len()), "round {round}");
            assert!(cut_short(&path).is_none());
        }
    }

    #[test]
    fn a_file_that_is_no_redb_file_is_not_mendable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0x5a; 4096]).unwrap();
        assert!(!Header::read(&path).unwrap().unwrap().mendable());
        std::fs::write(&path, b"short").unwrap();
        assert!(Header::read(&path).unwrap().is_none());
        // Too short for a header: cut short if it begins as redb's do, else no redb file
        // (which the open says).
        assert!(first_bytes_problem(&path).is_none());
        std::fs::write(&path, [&MAGIC[..], &[0; 90]].concat()).unwrap();
        assert!(first_bytes_problem(&path).is_some_and(|p| p.contains("cut short (99 bytes")));
    }
}
