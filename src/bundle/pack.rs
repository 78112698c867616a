//! Packing a workDir into a gzip'd tar: what is left out, limits checked before any file
//! is read, files that change while they are read refused.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{io_err, BundleError};
use super::limits::{Limits, BLOCK};

/// Top-level names that belong to one running Lingma, not to its login.
const SKIP_TOP_LEVEL: [&str; 3] = [".info", ".info.json", "logs"];

/// Packs the contents of `work_dir` into a gzip'd tar (see the module docs for what is left
/// out). Two packs of an unchanged tree differ at most in recorded mtimes.
pub(crate) fn pack(work_dir: &Path) -> Result<Vec<u8>, BundleError> {
    pack_with_limits(work_dir, Limits::default())
}

struct PackItem {
    rel: PathBuf,
    abs: PathBuf,
    meta: fs::Metadata,
}

pub(super) fn pack_with_limits(work_dir: &Path, limits: Limits) -> Result<Vec<u8>, BundleError> {
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
