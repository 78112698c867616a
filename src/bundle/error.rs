//! `BundleError`: what went wrong packing, decoding or unpacking a bundle.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong packing, decoding or unpacking a bundle. Messages name paths and
/// entries, never contents.
#[derive(Debug)]
pub(crate) enum BundleError {
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

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
