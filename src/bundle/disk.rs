//! Writing checked entries into the workDir: each path checked on disk again just before
//! its write, files written to a fresh temporary name and renamed over the target.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::classify::{Item, Kind};
use super::error::{io_err, BundleError};

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

pub(super) fn check_existing(work_dir: &Path, item: &Item) -> Result<(), BundleError> {
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
pub(super) fn write_item(
    work_dir: &Path,
    item: &Item,
    data: &mut dyn Read,
) -> Result<u64, BundleError> {
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
