//! How large a bundle may be, packing or unpacking.

/// Largest workDir [`pack`] accepts and largest archive [`unpack`] inflates, in bytes of
/// uncompressed tar stream (file data plus tar headers and padding).
pub(super) const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// Most entries (files plus directories) a bundle may hold, packing or unpacking.
pub(super) const MAX_BUNDLE_ENTRIES: usize = 100_000;

/// Longest path component and whole relative path accepted from an archive.
pub(super) const MAX_NAME_BYTES: usize = 255;
pub(super) const MAX_PATH_BYTES: usize = 4095;

pub(super) const BLOCK: u64 = 512;

/// Size and count limits; the public functions use [`MAX_BUNDLE_BYTES`] and
/// [`MAX_BUNDLE_ENTRIES`], tests inject smaller ones.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_bytes: u64,
    pub(super) max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_BUNDLE_BYTES,
            max_entries: MAX_BUNDLE_ENTRIES,
        }
    }
}
