//! Unpacking a bundle: the whole archive is read and checked (bounded inflation, entry
//! limit, entries that contradict each other or what exists) before a byte is written.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::classify::{classify, Item, Kind};
use super::disk::{check_existing, write_item};
use super::error::{io_err, BundleError};
use super::limits::Limits;

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Regular files written.
    pub(crate) files: usize,
    /// Bytes of file data written.
    pub(crate) bytes: u64,
}

// unpack
// ---------------------------------------------------------------------------------------

/// Unpacks a bundle made by [`pack`] into `work_dir` (created if missing), overwriting
/// existing regular files and leaving other existing files alone. The whole archive is
/// validated before anything is written; see the module docs for what is refused.
pub(crate) fn unpack(raw: &[u8], work_dir: &Path) -> Result<Unpacked, BundleError> {
    unpack_with_limits(raw, work_dir, Limits::default())
}

pub(super) fn unpack_with_limits(
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
