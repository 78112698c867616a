//! glibc malloc settings for a long-running gateway. glibc keeps freed memory per arena (up
//! to eight per core) and per thread (its tcache), and the gateway runs a thread per client
//! connection and per request: under steady load its RSS crept up long after its live heap
//! stopped growing (`scripts/soak.sh`: +48 % between 10,000 and 100,000 requests with the
//! defaults; +1.6 % with the settings below, at the same throughput; see README,
//! Performance). These settings can only be given before the process starts
//! (`GLIBC_TUNABLES`), and the crate forbids `unsafe` (no `mallopt`), so `serve` executes
//! itself again, once, with them set: same pid, arguments and environment otherwise.
//!
//! Nothing is done when the operator chose for themselves (`GLIBC_TUNABLES` or
//! `MALLOC_ARENA_MAX` already set), with `malloc_tuning = false`, or off glibc. Lingma and
//! the simulator are spawned without these settings: they are the gateway's own.

use std::ffi::OsString;

/// One arena, no per-thread cache, fixed trim and mmap thresholds (the dynamic mmap
/// threshold otherwise moves large buffers into the arenas after the first one is freed).
pub const TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0:glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072";

/// Set on the re-executed process, so that it does not do it again.
const MARK: &str = "LINGMA_MALLOC_TUNED";

/// What `tune` did, for the log (logging starts only after it).
#[derive(Debug, PartialEq, Eq)]
pub enum Tuning {
    /// This process runs with `TUNABLES` (it was re-executed).
    Tuned,
    /// The operator set their own `GLIBC_TUNABLES`/`MALLOC_ARENA_MAX`.
    Operator,
    /// `malloc_tuning = false`, or not glibc.
    Off,
    /// The re-execution failed; glibc's defaults stay.
    Failed(String),
}

/// Re-executes the process with `TUNABLES` when that is wanted; returns only when it is
/// not (or failed).
pub fn tune(enabled: bool) -> Tuning {
    let env = |k: &str| std::env::var_os(k);
    if env(MARK).is_some() {
        return Tuning::Tuned;
    }
    if !enabled || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Tuning::Off;
    }
    if env("GLIBC_TUNABLES").is_some() || env("MALLOC_ARENA_MAX").is_some() {
        return Tuning::Operator;
    }
    reexec()
}

#[cfg(unix)]
fn reexec() -> Tuning {
    use std::os::unix::process::CommandExt;
    // /proc/self/exe is this very binary even if the file was replaced since it started.
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| "lingma-gateway".into()),
        )
        .args(args)
        .env("GLIBC_TUNABLES", TUNABLES)
        .env(MARK, "1")
        .exec();
    Tuning::Failed(err.to_string())
}

#[cfg(not(unix))]
fn reexec() -> Tuning {
    Tuning::Off
}

/// Keeps the gateway's own malloc settings out of a child's environment.
pub fn clean_child(cmd: &mut std::process::Command) {
    if std::env::var_os(MARK).is_some() {
        cmd.env_remove("GLIBC_TUNABLES").env_remove(MARK);
    }
}

pub fn log(t: &Tuning) {
    match t {
        Tuning::Tuned => log::info!("glibc malloc: one arena, no per-thread cache (malloc_tuning; GLIBC_TUNABLES={TUNABLES})"),
        Tuning::Operator => log::info!("glibc malloc: the operator's GLIBC_TUNABLES/MALLOC_ARENA_MAX apply (malloc_tuning left them alone)"),
        Tuning::Off => log::debug!("glibc malloc: defaults (malloc_tuning off, or not glibc)"),
        Tuning::Failed(e) => log::warn!("glibc malloc: could not re-execute with tuned settings ({e}); glibc's defaults apply, and RSS may creep up under long load"),
    }
}
