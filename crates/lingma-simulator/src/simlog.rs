//! `<workDir>/logs/lingma.log`, the simulator's own log file, which tests grep while it runs.
//! Written by every simulator thread; each line is one unbuffered write, so it is on disk when
//! `line` returns.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) struct SimLog {
    file: Mutex<File>,
}

impl SimLog {
    pub(crate) fn open(work_dir: &Path) -> io::Result<SimLog> {
        let dir = work_dir.join("logs");
        std::fs::create_dir_all(&dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("lingma.log"))?;
        Ok(SimLog {
            file: Mutex::new(file),
        })
    }

    /// Appends `<unix seconds.millis> <msg>` and mirrors it to the process log.
    pub(crate) fn line(&self, msg: &str) {
        log::info!("simulator: {msg}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let text = format!("{}.{:03} {msg}\n", now.as_secs(), now.subsec_millis());
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(text.as_bytes()) {
            log::warn!("simulator: cannot write lingma.log: {e}");
        }
    }
}
