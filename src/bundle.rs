//! Session bundles: a Lingma workDir (which holds the login: `cache/id`, `cache/user`, ...)
//! as a gzip'd tar, base64-encoded, so a login can move between machines.
//!
//! - [`pack`] archives the workDir's contents (regular files and directories only, sorted,
//!   relative paths), leaving out what belongs to one running process: `.info`,
//!   `.info.json`, `logs/`, lock/pid/socket files, and anything that is not a regular file
//!   or directory. Symlinks are skipped, never followed.
//! - [`encode`] / [`decode`] are standard base64 (decode ignores whitespace).
//! - [`unpack`] first reads and validates the *whole* archive (bounded decompression, entry
//!   limit, path and type checks, checks against what already exists in the workDir) and
//!   only then writes. Nothing is ever written outside the workDir. (The on-disk checks are
//!   path-based, `symlink_metadata` per component, repeated just before each write: a process
//!   that swaps a directory of the workDir for a symlink *while* an unpack runs is outside
//!   what std can rule out without `openat`/`O_NOFOLLOW`.)
//!
//! Link policy: every symbolic or hard link entry is rejected, whatever its target. [`pack`]
//! never produces links, a login needs none, and even a "harmless" relative link inside the
//! workDir would let a later entry (or a later unpack) write through it.
//!
//! A bundle is a login, so neither its bytes nor its base64 text are ever logged; log lines
//! carry only sizes, counts and file names.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;

/// Largest workDir [`pack`] accepts and largest archive [`unpack`] inflates, in bytes of
/// uncompressed tar stream (file data plus tar headers and padding).
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// Most entries (files plus directories) a bundle may hold, packing or unpacking.
pub const MAX_BUNDLE_ENTRIES: usize = 100_000;

/// Top-level names that belong to one running Lingma, not to its login.
const SKIP_TOP_LEVEL: [&str; 3] = [".info", ".info.json", "logs"];

/// Longest path component and whole relative path accepted from an archive.
const MAX_NAME_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 4095;

const BLOCK: u64 = 512;

/// What went wrong packing, decoding or unpacking a bundle. Messages name paths and
/// entries, never contents.
#[derive(Debug)]
pub enum BundleError {
    /// A filesystem operation on `path` failed.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The workDir is larger than the pack limit.
    WorkDirTooLarge { limit: u64 },
    /// The workDir has more files and directories than the pack limit.
    WorkDirTooManyEntries { limit: usize },
    /// The bundle is (or inflates to) more than the limit.
    TooLarge { limit: u64 },
    /// The archive has more entries than the limit.
    TooManyEntries { limit: usize },
    /// The bundle text is empty.
    Empty,
    /// The bundle text is not base64.
    Base64(String),
    /// The decoded bundle does not start like gzip data.
    NotGzip,
    /// The gzip stream or the tar inside it is truncated or malformed.
    Corrupt(String),
    /// An entry's path is absolute, climbs out with `..`, or is otherwise unusable.
    UnsafePath { entry: String, reason: &'static str },
    /// A symbolic or hard link entry (links are never accepted).
    Link {
        entry: String,
        target: String,
        hard: bool,
    },
    /// A device, fifo or other entry that is not a regular file or directory.
    UnsupportedType { entry: String, kind: String },
    /// The entry clashes with another entry or with what already exists in the workDir.
    Conflict { entry: String, reason: String },
    /// Writing the entry would go through an existing symlink inside the workDir.
    ThroughSymlink { entry: String, symlink: PathBuf },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            BundleError::WorkDirTooLarge { limit } => write!(
                f,
                "the workDir is larger than the bundle limit of {limit} bytes"
            ),
            BundleError::WorkDirTooManyEntries { limit } => {
                write!(f, "the workDir has more than {limit} files and directories")
            }
            BundleError::TooLarge { limit } => {
                write!(f, "bundle exceeds the limit of {limit} uncompressed bytes")
            }
            BundleError::TooManyEntries { limit } => {
                write!(f, "bundle has more than {limit} entries")
            }
            BundleError::Empty => write!(f, "bundle is empty"),
            BundleError::Base64(detail) => write!(f, "bundle is not valid base64: {detail}"),
            BundleError::NotGzip => write!(f, "bundle is not gzip data"),
            BundleError::Corrupt(detail) => write!(f, "bundle is truncated or corrupt: {detail}"),
            BundleError::UnsafePath { entry, reason } => {
                write!(f, "bundle entry {entry:?} {reason}")
            }
            BundleError::Link {
                entry,
                target,
                hard,
            } => write!(
                f,
                "bundle entry {entry:?} is a {} link to {target:?}; links are not allowed",
                if *hard { "hard" } else { "symbolic" }
            ),
            BundleError::UnsupportedType { entry, kind } => write!(
                f,
                "bundle entry {entry:?} is a {kind}; only regular files and directories are allowed"
            ),
            BundleError::Conflict { entry, reason } => {
                write!(f, "bundle entry {entry:?} {reason}")
            }
            BundleError::ThroughSymlink { entry, symlink } => write!(
                f,
                "bundle entry {entry:?} would be written through the symlink {} in the workDir",
                symlink.display()
            ),
        }
    }
}

impl std::error::Error for BundleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BundleError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: usize,
    /// Bytes of file data written.
    pub bytes: u64,
}

/// Size and count limits; the public functions use [`MAX_BUNDLE_BYTES`] and
/// [`MAX_BUNDLE_ENTRIES`], tests inject smaller ones.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_bytes: u64,
    max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_BUNDLE_BYTES,
            max_entries: MAX_BUNDLE_ENTRIES,
        }
    }
}

// ---------------------------------------------------------------------------------------
// base64
// ---------------------------------------------------------------------------------------

/// Standard base64 (with padding) of a packed bundle.
pub fn encode(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Decodes standard base64, ignoring ASCII whitespace (line breaks from mail or terminals).
pub fn decode(b64: &str) -> Result<Vec<u8>, BundleError> {
    let clean: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if clean.is_empty() {
        return Err(BundleError::Empty);
    }
    // A gzip of at most MAX_BUNDLE_BYTES of tar is at most slightly larger than that
    // (stored deflate blocks); refuse anything clearly bigger before allocating for it.
    let max_raw = MAX_BUNDLE_BYTES + MAX_BUNDLE_BYTES / 64 + 4096;
    if (clean.len() as u64) / 4 * 3 > max_raw {
        return Err(BundleError::TooLarge {
            limit: MAX_BUNDLE_BYTES,
        });
    }
    // Offsets count non-whitespace symbols; offending bytes are not echoed (secret text).
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .map_err(|e| {
            BundleError::Base64(match e {
                base64::DecodeError::InvalidByte(at, _) => {
                    format!("invalid symbol at position {at} (not counting whitespace)")
                }
                base64::DecodeError::InvalidLength(len) => {
                    format!("invalid length ({len} symbols)")
                }
                base64::DecodeError::InvalidLastSymbol(at, _) => {
                    format!("invalid final symbol at position {at} (not counting whitespace)")
                }
                base64::DecodeError::InvalidPadding => "invalid padding".to_string(),
            })
        })
}

// ---------------------------------------------------------------------------------------
// pack
// ---------------------------------------------------------------------------------------

/// Packs the contents of `work_dir` into a gzip'd tar (see the module docs for what is left
/// out). Two packs of an unchanged tree differ at most in recorded mtimes.
pub fn pack(work_dir: &Path) -> Result<Vec<u8>, BundleError> {
    pack_with_limits(work_dir, Limits::default())
}

struct PackItem {
    rel: PathBuf,
    abs: PathBuf,
    meta: fs::Metadata,
}

fn pack_with_limits(work_dir: &Path, limits: Limits) -> Result<Vec<u8>, BundleError> {
    let root = fs::metadata(work_dir).map_err(io_err("read", work_dir))?;
    if !root.is_dir() {
        return Err(BundleError::Io {
            action: "pack",
            path: work_dir.to_path_buf(),
            source: io::Error::other("not a directory"),
        });
    }
    let items = collect(work_dir, limits)?;

    let out = Counting {
        inner: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
        count: 0,
    };
    let mut builder = tar::Builder::new(out);
    let (mut files, mut dirs, mut data) = (0usize, 0usize, 0u64);
    for item in &items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime_of(&item.meta));
        header.set_mode(mode_of(&item.meta));
        if item.meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, &item.rel, io::empty())
                .map_err(io_err("archive", &item.abs))?;
            dirs += 1;
        } else {
            let file = fs::File::open(&item.abs).map_err(io_err("open", &item.abs))?;
            let opened = file.metadata().map_err(io_err("read", &item.abs))?;
            if !opened.is_file() || !same_file(&opened, &item.meta) {
                return Err(BundleError::Io {
                    action: "pack",
                    path: item.abs.clone(),
                    source: io::Error::other("file was replaced while packing"),
                });
            }
            let size = opened.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            let reader = Exact {
                inner: file,
                remaining: size,
            };
            builder
                .append_data(&mut header, &item.rel, reader)
                .map_err(io_err("read", &item.abs))?;
            files += 1;
            data += size;
        }
        if builder.get_ref().count > limits.max_bytes {
            return Err(BundleError::WorkDirTooLarge {
                limit: limits.max_bytes,
            });
        }
    }
    let out = builder.into_inner().map_err(io_err("archive", work_dir))?;
    if out.count > limits.max_bytes {
        return Err(BundleError::WorkDirTooLarge {
            limit: limits.max_bytes,
        });
    }
    let tar_bytes = out.count;
    let gz = out.inner.finish().map_err(io_err("compress", work_dir))?;
    log::info!(
        "packed workDir {}: {files} files, {dirs} directories, {data} bytes of data, \
         {tar_bytes} bytes of tar, {} bytes compressed",
        work_dir.display(),
        gz.len()
    );
    Ok(gz)
}

/// Walks `work_dir` depth-first in sorted order without following symlinks, and checks the
/// limits before any file is read.
fn collect(work_dir: &Path, limits: Limits) -> Result<Vec<PackItem>, BundleError> {
    let mut items = Vec::new();
    // Conservative size of the tar stream: two zero blocks at the end.
    let mut estimate = 2 * BLOCK;
    // Directories still to list, as relative paths; popped in sorted order.
    let mut stack = vec![PathBuf::new()];
    while let Some(dir_rel) = stack.pop() {
        let dir_abs = work_dir.join(&dir_rel);
        let mut children: Vec<fs::DirEntry> = fs::read_dir(&dir_abs)
            .map_err(io_err("list", &dir_abs))?
            .collect::<Result<_, _>>()
            .map_err(io_err("list", &dir_abs))?;
        children.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for child in children {
            let name = child.file_name();
            let rel = dir_rel.join(&name);
            let abs = child.path();
            let top_level = dir_rel.as_os_str().is_empty();
            if top_level && SKIP_TOP_LEVEL.iter().any(|s| name == *s) {
                log::debug!("bundle: leaving out {}", rel.display());
                continue;
            }
            let meta = fs::symlink_metadata(&abs).map_err(io_err("read", &abs))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                log::info!("bundle: skipping symlink {}", rel.display());
                continue;
            }
            if !ft.is_dir() && !ft.is_file() {
                log::info!("bundle: skipping special file {}", rel.display());
                continue;
            }
            if ft.is_file() && is_process_file(&name) {
                log::debug!("bundle: leaving out {}", rel.display());
                continue;
            }
            let size = if ft.is_file() { meta.len() } else { 0 };
            estimate = estimate.saturating_add(tar_entry_size(&rel, size));
            if estimate > limits.max_bytes {
                return Err(BundleError::WorkDirTooLarge {
                    limit: limits.max_bytes,
                });
            }
            if items.len() >= limits.max_entries {
                return Err(BundleError::WorkDirTooManyEntries {
                    limit: limits.max_entries,
                });
            }
            if ft.is_dir() {
                subdirs.push(rel.clone());
            }
            items.push(PackItem { rel, abs, meta });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    // One sorted order whatever the walk did: component-wise, so a directory comes right
    // before its contents (`a`, `a/b`, `a-b`).
    items.sort_by(|a, b| a.rel.components().cmp(b.rel.components()));
    Ok(items)
}

/// Lock, pid and socket files belong to a running process.
fn is_process_file(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_lowercase();
    name == "lock"
        || [".lock", ".pid", ".sock", ".socket"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Upper bound of the tar bytes one entry takes: header, GNU long-name extension if the
/// path does not fit in the header, and data padded to whole blocks.
fn tar_entry_size(rel: &Path, size: u64) -> u64 {
    let path_len = rel.as_os_str().len() as u64 + 1;
    let long_name = if path_len >= 100 {
        BLOCK + path_len.div_ceil(BLOCK) * BLOCK
    } else {
        0
    };
    BLOCK + long_name + size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

fn mtime_of(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode_of(meta: &fs::Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else {
        0o644
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

/// Counts bytes written through it (the uncompressed tar stream).
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Yields exactly `remaining` bytes of `inner` (the size recorded in the tar header): a file
/// that grew is cut at that size, one that shrank is an error rather than a corrupt archive.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while packing",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// unpack
// ---------------------------------------------------------------------------------------

/// Unpacks a bundle made by [`pack`] into `work_dir` (created if missing), overwriting
/// existing regular files and leaving other existing files alone. The whole archive is
/// validated before anything is written; see the module docs for what is refused.
pub fn unpack(raw: &[u8], work_dir: &Path) -> Result<Unpacked, BundleError> {
    unpack_with_limits(raw, work_dir, Limits::default())
}

fn unpack_with_limits(
    raw: &[u8],
    work_dir: &Path,
    limits: Limits,
) -> Result<Unpacked, BundleError> {
    if raw.len() < 2 || raw[..2] != [0x1f, 0x8b] {
        return Err(BundleError::NotGzip);
    }

    // Pass 1: read everything, write nothing.
    let mut seen: HashMap<PathBuf, bool> = HashMap::new(); // path -> is_dir
    let mut planned = Unpacked::default();
    scan(raw, limits, |item, _data| {
        check_unique(&item, &mut seen)?;
        check_existing(work_dir, &item)?;
        if let Kind::File { size, .. } = item.kind {
            planned.files += 1;
            planned.bytes += size;
        }
        Ok(())
    })?;

    // Pass 2: the archive is known to be sound; inflate it again and write it.
    fs::create_dir_all(work_dir).map_err(io_err("create", work_dir))?;
    let mut done = Unpacked::default();
    scan(raw, limits, |item, data| {
        let written = write_item(work_dir, &item, data)?;
        if let Kind::File { .. } = item.kind {
            done.files += 1;
            done.bytes += written;
        }
        Ok(())
    })?;
    debug_assert_eq!(done, planned);
    log::info!(
        "unpacked bundle into {}: {} files, {} bytes",
        work_dir.display(),
        done.files,
        done.bytes
    );
    Ok(done)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Dir,
    File { size: u64, executable: bool },
}

/// One validated archive entry: a safe relative path (normal components only).
struct Item {
    entry: String,
    rel: PathBuf,
    kind: Kind,
}

/// Inflates `raw` through the byte cap and walks its tar entries, calling `visit` for every
/// file and directory entry (after path and type checks), then reads the rest of the gzip
/// stream so a truncated or corrupt trailer is caught too.
fn scan(
    raw: &[u8],
    limits: Limits,
    mut visit: impl FnMut(Item, &mut dyn Read) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let tripped = std::cell::Cell::new(false);
    let stream_err = |e: io::Error, tripped: &std::cell::Cell<bool>| {
        if tripped.get() {
            BundleError::TooLarge {
                limit: limits.max_bytes,
            }
        } else {
            BundleError::Corrupt(e.to_string())
        }
    };
    let capped = Capped {
        inner: flate2::read::GzDecoder::new(raw),
        remaining: limits.max_bytes,
        tripped: &tripped,
    };
    let mut archive = tar::Archive::new(capped);
    let mut count = 0usize;
    {
        let entries = archive.entries().map_err(|e| stream_err(e, &tripped))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| stream_err(e, &tripped))?;
            count += 1;
            if count > limits.max_entries {
                return Err(BundleError::TooManyEntries {
                    limit: limits.max_entries,
                });
            }
            if let Some(item) = classify(&entry)? {
                visit(item, &mut entry).map_err(|e| match e {
                    // A read of entry data that hit the cap or a broken stream.
                    BundleError::Io { source, .. } if tripped.get() => stream_err(source, &tripped),
                    other => other,
                })?;
            }
        }
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_err(e, &tripped))?;
    Ok(())
}

/// Checks one entry's path and type. `Ok(None)` for metadata-only entries (pax global
/// headers) that create nothing.
fn classify<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<Item>, BundleError> {
    let bytes = entry.path_bytes();
    let name = String::from_utf8_lossy(&bytes).into_owned();
    let unsafe_path = |reason| BundleError::UnsafePath {
        entry: name.clone(),
        reason,
    };
    let ty = entry.header().entry_type();
    let kind = match ty {
        tar::EntryType::Regular => Kind::File {
            size: entry.size(),
            executable: entry
                .header()
                .mode()
                .map(|m| m & 0o111 != 0)
                .unwrap_or(false),
        },
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            return Err(BundleError::Link {
                entry: name,
                target,
                hard: ty == tar::EntryType::Link,
            });
        }
        other => {
            let kind = match other {
                tar::EntryType::Char => "character device".to_string(),
                tar::EntryType::Block => "block device".to_string(),
                tar::EntryType::Fifo => "fifo".to_string(),
                tar::EntryType::Continuous => "contiguous file".to_string(),
                tar::EntryType::GNUSparse => "sparse file".to_string(),
                other => format!("entry of type {:?}", other.as_byte() as char),
            };
            return Err(BundleError::UnsupportedType { entry: name, kind });
        }
    };

    if bytes.contains(&0) {
        return Err(unsafe_path("has a NUL byte in its path"));
    }
    if bytes.len() > MAX_PATH_BYTES {
        return Err(unsafe_path("has a path that is too long"));
    }
    let path = entry
        .path()
        .map_err(|_| unsafe_path("has a path that is not valid here"))?;
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                if part.len() > MAX_NAME_BYTES {
                    return Err(unsafe_path("has a path component that is too long"));
                }
                rel.push(part);
            }
            // `./cache/id`, as `tar -C dir .` writes it.
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(unsafe_path(
                    "escapes the workDir (its path has a \"..\" component)",
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path("escapes the workDir (its path is absolute)"))
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return match kind {
            // `./` itself: the workDir.
            Kind::Dir => Ok(None),
            Kind::File { .. } => Err(unsafe_path("has an empty path")),
        };
    }
    Ok(Some(Item {
        entry: name,
        rel,
        kind,
    }))
}

/// Entries must not contradict each other: no file twice, no file where a directory is,
/// nothing inside a file.
fn check_unique(item: &Item, seen: &mut HashMap<PathBuf, bool>) -> Result<(), BundleError> {
    let conflict = |reason: String| BundleError::Conflict {
        entry: item.entry.clone(),
        reason,
    };
    let mut ancestors: Vec<&Path> = item
        .rel
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    ancestors.reverse();
    for ancestor in ancestors {
        match seen.get(ancestor) {
            Some(false) => {
                return Err(conflict(format!(
                    "is inside {}, which the bundle also has as a file",
                    ancestor.display()
                )))
            }
            Some(true) => {}
            None => {
                seen.insert(ancestor.to_path_buf(), true);
            }
        }
    }
    match (item.kind, seen.get(&item.rel)) {
        (Kind::Dir, Some(false)) => Err(conflict("is also in the bundle as a file".into())),
        (Kind::File { .. }, Some(true)) => {
            Err(conflict("is also in the bundle as a directory".into()))
        }
        (Kind::File { .. }, Some(false)) => Err(conflict("appears twice in the bundle".into())),
        _ => {
            seen.insert(item.rel.clone(), matches!(item.kind, Kind::Dir));
            Ok(())
        }
    }
}

/// Checks the existing path components of the entry's target with `symlink_metadata`:
/// no symlinks, directories where directories go, a regular file (or nothing) where the
/// file goes. Creates missing directories when `create` is set.
fn walk_target(work_dir: &Path, item: &Item, create: bool) -> Result<PathBuf, BundleError> {
    let conflict = |reason: String| BundleError::Conflict {
        entry: item.entry.clone(),
        reason,
    };
    let parts: Vec<Component<'_>> = item.rel.components().collect();
    let mut cur = work_dir.to_path_buf();
    let mut missing = false;
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        let wants_dir = i + 1 < parts.len() || matches!(item.kind, Kind::Dir);
        if missing && !create {
            continue;
        }
        let meta = match fs::symlink_metadata(&cur) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("inspect", &cur)(e)),
        };
        match meta {
            None if !create => missing = true,
            None if wants_dir => create_dir(&cur)?,
            None => {}
            Some(m) if m.file_type().is_symlink() => {
                return Err(BundleError::ThroughSymlink {
                    entry: item.entry.clone(),
                    symlink: cur,
                })
            }
            Some(m) if m.is_dir() && wants_dir => {}
            Some(m) if m.is_dir() => {
                return Err(conflict(format!(
                    "would replace the directory {}",
                    cur.display()
                )))
            }
            Some(m) if m.is_file() && !wants_dir => {}
            Some(m) if m.is_file() => {
                return Err(conflict(format!(
                    "needs a directory where the file {} is",
                    cur.display()
                )))
            }
            Some(_) => {
                return Err(conflict(format!(
                    "would replace the special file {}",
                    cur.display()
                )))
            }
        }
    }
    Ok(cur)
}

fn check_existing(work_dir: &Path, item: &Item) -> Result<(), BundleError> {
    walk_target(work_dir, item, false).map(drop)
}

fn create_dir(path: &Path) -> Result<(), BundleError> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(io_err("create", path))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes one entry (re-checking the path on disk) and returns the file bytes written.
/// Files are written to a fresh temporary name in the same directory (`create_new`, which
/// never follows a symlink) and renamed over the target, so an existing file is replaced,
/// never written through.
fn write_item(work_dir: &Path, item: &Item, data: &mut dyn Read) -> Result<u64, BundleError> {
    let target = walk_target(work_dir, item, true)?;
    let Kind::File { size, executable } = item.kind else {
        return Ok(0);
    };
    let dir = target.parent().unwrap_or(work_dir);
    let (temp, mut file) = create_temp(dir, executable)?;
    let result = io::copy(data, &mut file)
        .map_err(io_err("write", &target))
        .and_then(|n| {
            if n == size {
                Ok(n)
            } else {
                Err(BundleError::Corrupt(format!(
                    "entry {:?} is shorter than its header says",
                    item.entry
                )))
            }
        })
        .and_then(|n| {
            drop(file);
            fs::rename(&temp, &target)
                .map_err(io_err("replace", &target))
                .map(|()| n)
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn create_temp(dir: &Path, executable: bool) -> Result<(PathBuf, fs::File), BundleError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A login is a secret: owner-only, whatever the archive says.
        options.mode(if executable { 0o700 } else { 0o600 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    let mut attempts = 0;
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".lgw-bundle-{}-{n}.tmp", std::process::id()));
        match options.open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(io_err("create", &temp)(e)),
        }
    }
}

/// Passes at most `remaining` bytes of the inflated stream; one more is an error, and
/// `tripped` records that the error was the cap, not corruption.
struct Capped<'a, R> {
    inner: R,
    remaining: u64,
    tripped: &'a std::cell::Cell<bool>,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = usize::try_from(self.remaining.saturating_add(1)).unwrap_or(usize::MAX);
        let max = buf.len().min(room);
        let n = self.inner.read(&mut buf[..max])?;
        if n as u64 > self.remaining {
            self.tripped.set(true);
            return Err(io::Error::other("bundle inflates past the size limit"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "lgw-bundle-{tag}-{}",
                uuid::Uuid::new_v4().simple()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// `parent/work`, with `work` created and empty.
    fn target(tag: &str) -> (TempDir, PathBuf) {
        let parent = TempDir::new(tag);
        let work = parent.path().join("work");
        fs::create_dir(&work).unwrap();
        (parent, work)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Nothing was written: the parent holds only the (still empty) work dir.
    fn assert_untouched(parent: &Path, work: &Path) {
        assert_eq!(names(parent), vec!["work".to_string()], "parent changed");
        assert!(
            names(work).is_empty(),
            "work dir changed: {:?}",
            names(work)
        );
    }

    /// Relative path -> contents (`None` for a directory); symlinks as "-> target".
    fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.file_type().is_symlink() {
                    let to = fs::read_link(&path).unwrap();
                    out.insert(rel, Some(format!("-> {}", to.display()).into_bytes()));
                } else if meta.is_dir() {
                    out.insert(rel, None);
                    walk(root, &path, out);
                } else {
                    out.insert(rel, Some(fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// One hand-made tar entry: raw name and link bytes go straight into the header, so
    /// the `tar` crate's writer-side path checks never see them.
    struct Raw<'a> {
        name: &'a [u8],
        kind: u8,
        link: &'a [u8],
        data: &'a [u8],
    }

    fn raw(name: &str, kind: u8) -> Raw<'_> {
        Raw {
            name: name.as_bytes(),
            kind,
            link: b"",
            data: b"",
        }
    }

    fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
            h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_size(e.data.len() as u64);
            h.set_entry_type(tar::EntryType::new(e.kind));
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(e.data);
            let pad = (512 - e.data.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
        out.extend([0u8; 1024]);
        out
    }

    fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
        Raw {
            data,
            ..raw(name, b'0')
        }
    }

    fn link<'a>(name: &'a str, kind: u8, to: &'a str) -> Raw<'a> {
        Raw {
            link: to.as_bytes(),
            ..raw(name, kind)
        }
    }

    /// Paths of a packed bundle's entries, in archive order.
    fn entry_paths(raw: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(raw));
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn sample_work_dir(dir: &Path) {
        fs::create_dir_all(dir.join("cache")).unwrap();
        fs::write(dir.join("cache/id"), b"machine-id-123").unwrap();
        fs::write(dir.join("cache/user"), b"{\"token\":\"secret\"}").unwrap();
        fs::create_dir_all(dir.join("a/b/c")).unwrap();
        fs::write(dir.join("a/b/c/deep.bin"), (0..=255u8).collect::<Vec<_>>()).unwrap();
        fs::write(dir.join("a/b/empty.txt"), b"").unwrap();
        fs::create_dir_all(dir.join("empty-dir")).unwrap();
        let long = "n".repeat(120);
        fs::create_dir_all(dir.join("a").join(&long)).unwrap();
        fs::write(dir.join("a").join(&long).join("long-path.txt"), b"long").unwrap();
        fs::write(dir.join("big.dat"), vec![7u8; 70_000]).unwrap();
    }

    fn add_skipped(dir: &Path) -> std::os::unix::net::UnixListener {
        fs::write(dir.join(".info"), b"37010\n4242\n").unwrap();
        fs::write(dir.join(".info.json"), b"{\"port\":37010}").unwrap();
        fs::create_dir_all(dir.join("logs")).unwrap();
        fs::write(dir.join("logs/lingma.log"), b"log line").unwrap();
        fs::write(dir.join("cache/db.lock"), b"").unwrap();
        fs::write(dir.join("lingma.pid"), b"4242").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("id", dir.join("cache/id-link")).unwrap();
        std::os::unix::net::UnixListener::bind(dir.join("lingma.sock")).unwrap()
    }

    #[test]
    fn round_trip_skips_process_files_and_symlinks() {
        let expected_dir = TempDir::new("expected");
        sample_work_dir(expected_dir.path());
        let src = TempDir::new("src");
        sample_work_dir(src.path());
        let _socket = add_skipped(src.path());

        let raw = pack(src.path()).unwrap();
        let text = encode(&raw);
        // Wrapped like a mail or terminal would.
        let wrapped: String = text
            .as_bytes()
            .chunks(76)
            .map(|c| format!("  {}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let decoded = decode(&wrapped).unwrap();
        assert_eq!(decoded, raw);

        let (_parent, work) = target("dst");
        let summary = unpack(&decoded, &work).unwrap();
        assert_eq!(tree(&work), tree(expected_dir.path()));
        assert_eq!(summary.files, 6);
        assert_eq!(summary.bytes, 14 + 18 + 256 + 4 + 70_000);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(work.join("cache/user"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "login files are owner-only");
        }
    }

    #[test]
    fn pack_is_sorted_relative_and_deterministic() {
        let src = TempDir::new("det");
        sample_work_dir(src.path());
        let one = pack(src.path()).unwrap();
        let two = pack(src.path()).unwrap();
        assert_eq!(one, two);
        let paths = entry_paths(&one);
        assert!(paths
            .iter()
            .all(|p| !p.starts_with('/') && !p.starts_with("./")));
        let mut sorted = paths.clone();
        sorted.sort_by(|a, b| Path::new(a).components().cmp(Path::new(b).components()));
        assert_eq!(paths, sorted);
        assert_eq!(paths.first().map(String::as_str), Some("a"));
        assert!(paths.contains(&"cache/user".to_string()));
    }

    #[test]
    fn pack_refuses_oversized_work_dir() {
        let src = TempDir::new("big");
        fs::write(src.path().join("blob"), vec![1u8; 64 * 1024]).unwrap();
        let limits = Limits {
            max_bytes: 32 * 1024,
            max_entries: 10,
        };
        let err = pack_with_limits(src.path(), limits).unwrap_err();
        assert!(matches!(err, BundleError::WorkDirTooLarge { .. }), "{err}");
        for i in 0..11 {
            fs::write(src.path().join(format!("f{i}")), b"x").unwrap();
        }
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let err = pack_with_limits(src.path(), limits).unwrap_err();
        assert!(
            matches!(err, BundleError::WorkDirTooManyEntries { .. }),
            "{err}"
        );
        assert!(pack(&src.path().join("missing")).is_err());
    }

    #[test]
    fn unpack_creates_missing_work_dir_and_accepts_dot_prefixes() {
        let parent = TempDir::new("dot");
        let work = parent.path().join("new/work");
        let tar = raw_tar(&[
            raw("./", b'5'),
            raw("./cache/", b'5'),
            file("./cache/id", b"abc"),
            file("plain", b"p"),
        ]);
        let summary = unpack(&gzip(&tar), &work).unwrap();
        assert_eq!(summary, Unpacked { files: 2, bytes: 4 });
        assert_eq!(fs::read(work.join("cache/id")).unwrap(), b"abc");
        assert_eq!(fs::read(work.join("plain")).unwrap(), b"p");
    }

    #[test]
    fn unpack_overwrites_regular_files_and_keeps_others() {
        let (_parent, work) = target("over");
        fs::create_dir(work.join("cache")).unwrap();
        fs::write(work.join("cache/id"), b"old id that is longer").unwrap();
        fs::write(work.join("cache/other"), b"kept").unwrap();
        let tar = raw_tar(&[file("cache/id", b"new")]);
        unpack(&gzip(&tar), &work).unwrap();
        assert_eq!(fs::read(work.join("cache/id")).unwrap(), b"new");
        assert_eq!(fs::read(work.join("cache/other")).unwrap(), b"kept");
        assert_eq!(
            names(&work.join("cache")),
            vec!["id", "other"],
            "no temp files left"
        );
    }

    /// Unpacks a malicious archive into `parent/work` and checks it fails without writing.
    fn refused(tag: &str, tar: &[u8]) -> (BundleError, TempDir, PathBuf) {
        let (parent, work) = target(tag);
        let err = unpack(&gzip(tar), &work).unwrap_err();
        assert_untouched(parent.path(), &work);
        (err, parent, work)
    }

    #[test]
    fn rejects_parent_dir_escape() {
        let (err, parent, _) = refused(
            "dotdot",
            &raw_tar(&[file("ok.txt", b"fine"), file("../escape.txt", b"x")]),
        );
        assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("\"../escape.txt\" escapes the workDir"),
            "{err}"
        );
        assert!(!parent.path().join("escape.txt").exists());

        let (err, parent, _) = refused("dotdot2", &raw_tar(&[file("a/../../b", b"x")]));
        assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
        assert!(!parent.path().join("b").exists());

        let (err, _, _) = refused("dotdot3", &raw_tar(&[file("../../etc/passwd", b"x")]));
        assert!(
            err.to_string()
                .starts_with("bundle entry \"../../etc/passwd\" escapes the workDir"),
            "{err}"
        );
    }

    #[test]
    fn rejects_absolute_path() {
        let parent = TempDir::new("abs");
        let work = parent.path().join("work");
        fs::create_dir(&work).unwrap();
        let abs = parent.path().join("abs.txt");
        let tar = raw_tar(&[file(abs.to_str().unwrap(), b"x")]);
        let err = unpack(&gzip(&tar), &work).unwrap_err();
        assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
        assert!(err.to_string().contains("absolute"), "{err}");
        assert_untouched(parent.path(), &work);
        assert!(!abs.exists());

        let (err, _, _) = refused("abs2", &raw_tar(&[file("/tmp/abs.txt", b"x")]));
        assert!(matches!(err, BundleError::UnsafePath { .. }), "{err}");
    }

    #[test]
    fn rejects_symlink_then_write_through_it() {
        let parent = TempDir::new("symabs");
        let work = parent.path().join("work");
        fs::create_dir(&work).unwrap();
        let out = parent.path().to_str().unwrap().to_string();
        let tar = raw_tar(&[link("link", b'2', &out), file("link/pwned", b"x")]);
        let err = unpack(&gzip(&tar), &work).unwrap_err();
        assert!(
            matches!(&err, BundleError::Link { entry, hard: false, .. } if entry == "link"),
            "{err}"
        );
        assert_untouched(parent.path(), &work);
        assert!(!parent.path().join("pwned").exists());

        let (err, _, _) = refused(
            "symetc",
            &raw_tar(&[link("link", b'2', "/etc"), file("link/passwd", b"x")]),
        );
        assert!(matches!(err, BundleError::Link { .. }), "{err}");
    }

    #[test]
    fn rejects_relative_escaping_symlink_and_hardlink() {
        let (err, _, _) = refused("symrel", &raw_tar(&[link("link", b'2', "../..")]));
        assert!(
            matches!(err, BundleError::Link { hard: false, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("links are not allowed"), "{err}");

        let (err, _, _) = refused("hard", &raw_tar(&[link("passwd", b'1', "/etc/passwd")]));
        assert!(matches!(err, BundleError::Link { hard: true, .. }), "{err}");
    }

    #[test]
    fn rejects_devices_and_fifos() {
        for (kind, what) in [
            (b'3', "character device"),
            (b'4', "block device"),
            (b'6', "fifo"),
        ] {
            let (err, _, _) = refused("dev", &raw_tar(&[file("ok", b"x"), raw("dev", kind)]));
            assert!(matches!(err, BundleError::UnsupportedType { .. }), "{err}");
            assert!(err.to_string().contains(what), "{err}");
        }
        let (err, _, _) = refused("unknown", &raw_tar(&[raw("weird", b'Z')]));
        assert!(matches!(err, BundleError::UnsupportedType { .. }), "{err}");
    }

    #[test]
    fn rejects_gzip_bomb_before_writing() {
        let big = vec![0u8; 2 * 1024 * 1024];
        let tar = raw_tar(&[file("ok", b"x"), file("big", &big)]);
        let gz = gzip(&tar);
        assert!(
            gz.len() < 64 * 1024,
            "test bundle should be small: {}",
            gz.len()
        );
        let (parent, work) = target("bomb");
        let limits = Limits {
            max_bytes: 1024 * 1024,
            max_entries: 100,
        };
        let err = unpack_with_limits(&gz, &work, limits).unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
        assert_untouched(parent.path(), &work);
        // The same bundle under the real limit is fine.
        unpack(&gz, &work).unwrap();
        assert_eq!(
            fs::metadata(work.join("big")).unwrap().len(),
            big.len() as u64
        );
    }

    #[test]
    fn rejects_too_many_entries() {
        let entries: Vec<String> = (0..5).map(|i| format!("d{i}/")).collect();
        let raws: Vec<Raw<'_>> = entries.iter().map(|n| raw(n, b'5')).collect();
        let (parent, work) = target("count");
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 3,
        };
        let err = unpack_with_limits(&gzip(&raw_tar(&raws)), &work, limits).unwrap_err();
        assert!(
            matches!(err, BundleError::TooManyEntries { limit: 3 }),
            "{err}"
        );
        assert_untouched(parent.path(), &work);
    }

    #[test]
    fn rejects_contradicting_entries() {
        let (err, _, _) = refused("clash", &raw_tar(&[file("a", b"x"), file("a/b", b"y")]));
        assert!(matches!(err, BundleError::Conflict { .. }), "{err}");
        let (err, _, _) = refused("dup", &raw_tar(&[file("a", b"x"), file("a", b"y")]));
        assert!(matches!(err, BundleError::Conflict { .. }), "{err}");
    }

    #[test]
    fn rejects_bad_base64() {
        assert!(matches!(
            decode("not base64!!"),
            Err(BundleError::Base64(_))
        ));
        assert!(matches!(decode("QUJD="), Err(BundleError::Base64(_))));
        assert!(matches!(decode(" \n\t"), Err(BundleError::Empty)));
        assert_eq!(decode("QU\nJD\n").unwrap(), b"ABC");
        let err = decode("QUJD$$$$").unwrap_err();
        assert!(
            err.to_string().starts_with("bundle is not valid base64"),
            "{err}"
        );
    }

    #[test]
    fn rejects_not_gzip_and_truncated_gzip() {
        let (parent, work) = target("notgz");
        let err = unpack(b"hello, this is not gzip", &work).unwrap_err();
        assert!(matches!(err, BundleError::NotGzip), "{err}");
        let err = unpack(b"", &work).unwrap_err();
        assert!(matches!(err, BundleError::NotGzip), "{err}");
        let err = unpack(&[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5], &work).unwrap_err();
        assert!(matches!(err, BundleError::Corrupt(_)), "{err}");
        // A gzip of something that is not a tar.
        let err = unpack(&gzip(&[b'x'; 600]), &work).unwrap_err();
        assert!(matches!(err, BundleError::Corrupt(_)), "{err}");
        assert_untouched(parent.path(), &work);

        let src = TempDir::new("trunc-src");
        sample_work_dir(src.path());
        let raw = pack(src.path()).unwrap();
        for cut in [raw.len() / 2, raw.len() - 4, raw.len() - 1] {
            let err = unpack(&raw[..cut], &work).unwrap_err();
            assert!(matches!(err, BundleError::Corrupt(_)), "cut {cut}: {err}");
            assert_untouched(parent.path(), &work);
        }
    }

    #[test]
    fn refuses_to_write_through_existing_symlinks() {
        let (parent, work) = target("through");
        let outside = parent.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, work.join("cache")).unwrap();
        let tar = raw_tar(&[file("fine", b"ok"), file("cache/id", b"x")]);
        let err = unpack(&gzip(&tar), &work).unwrap_err();
        assert!(
            matches!(&err, BundleError::ThroughSymlink { entry, .. } if entry == "cache/id"),
            "{err}"
        );
        assert!(names(&outside).is_empty());
        assert!(
            !work.join("fine").exists(),
            "validation happens before writing"
        );

        // The final component as a symlink to a file outside.
        let (parent, work) = target("through-file");
        let secret = parent.path().join("secret.txt");
        fs::write(&secret, b"original").unwrap();
        fs::create_dir(work.join("cache")).unwrap();
        std::os::unix::fs::symlink(&secret, work.join("cache/id")).unwrap();
        let err = unpack(&gzip(&raw_tar(&[file("cache/id", b"x")])), &work).unwrap_err();
        assert!(matches!(err, BundleError::ThroughSymlink { .. }), "{err}");
        assert_eq!(fs::read(&secret).unwrap(), b"original");
    }
}
