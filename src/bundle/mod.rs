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
//!
//! `pack` and `unpack` do the two directions, `classify` checks one archive entry's path
//! and type, `disk` writes checked entries, `text` is the base64 form.

mod classify;
mod disk;
mod error;
mod limits;
mod pack;
#[cfg(all(test, unix))]
mod tests;
mod text;
mod unpack;

pub(crate) use pack::pack;
pub(crate) use text::{decode, encode};
pub(crate) use unpack::unpack;
