//! One archive entry checked: a regular file or a directory (links, devices and the like
//! refused) at a safe relative path (no `..`, not absolute, bounded lengths).

use std::io::Read;
use std::path::{Component, PathBuf};

use super::error::BundleError;
use super::limits::{MAX_NAME_BYTES, MAX_PATH_BYTES};

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Dir,
    File { size: u64, executable: bool },
}

/// One validated archive entry: a safe relative path (normal components only).
pub(super) struct Item {
    pub(super) entry: String,
    pub(super) rel: PathBuf,
    pub(super) kind: Kind,
}

/// Checks one entry's path and type. `Ok(None)` for metadata-only entries (pax global
/// headers) that create nothing.
pub(super) fn classify<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<Item>, BundleError> {
    let bytes = entry.path_bytes();
    let name = String::from_utf8_lossy(&bytes).into_owned();
    // The type is checked first: a link is refused as a link whatever its path.
    let Some(kind) = kind_of(entry, &name)? else {
        return Ok(None);
    };
    let rel = relative_path(entry, &bytes, &name)?;
    if rel.as_os_str().is_empty() {
        return match kind {
            // `./` itself: the workDir.
            Kind::Dir => Ok(None),
            Kind::File { .. } => Err(unsafe_path(&name, "has an empty path")),
        };
    }
    Ok(Some(Item {
        entry: name,
        rel,
        kind,
    }))
}

/// A regular file or a directory; `None` for a pax global header; an error for anything
/// else (links, devices, fifos).
fn kind_of<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<Option<Kind>, BundleError> {
    let ty = entry.header().entry_type();
    match ty {
        tar::EntryType::Regular => Ok(Some(Kind::File {
            size: entry.size(),
            executable: entry
                .header()
                .mode()
                .map(|m| m & 0o111 != 0)
                .unwrap_or(false),
        })),
        tar::EntryType::Directory => Ok(Some(Kind::Dir)),
        tar::EntryType::XGlobalHeader => Ok(None),
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            Err(BundleError::Link {
                entry: name.to_string(),
                target,
                hard: ty == tar::EntryType::Link,
            })
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
            Err(BundleError::UnsupportedType {
                entry: name.to_string(),
                kind,
            })
        }
    }
}

/// The entry's path as normal components only (`.` dropped); empty for the workDir itself.
fn relative_path<R: Read>(
    entry: &tar::Entry<'_, R>,
    bytes: &[u8],
    name: &str,
) -> Result<PathBuf, BundleError> {
    if bytes.contains(&0) {
        return Err(unsafe_path(name, "has a NUL byte in its path"));
    }
    if bytes.len() > MAX_PATH_BYTES {
        return Err(unsafe_path(name, "has a path that is too long"));
    }
    let path = entry
        .path()
        .map_err(|_| unsafe_path(name, "has a path that is not valid here"))?;
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                if part.len() > MAX_NAME_BYTES {
                    return Err(unsafe_path(name, "has a path component that is too long"));
                }
                rel.push(part);
            }
            // `./cache/id`, as `tar -C dir .` writes it.
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(unsafe_path(
                    name,
                    "escapes the workDir (its path has a \"..\" component)",
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path(
                    name,
                    "escapes the workDir (its path is absolute)",
                ))
            }
        }
    }
    Ok(rel)
}

fn unsafe_path(name: &str, reason: &'static str) -> BundleError {
    BundleError::UnsafePath {
        entry: name.to_string(),
        reason,
    }
}
