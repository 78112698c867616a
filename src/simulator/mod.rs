//! The bundled Lingma simulator (placeholder until written).

/// Entry point for `lingma-gateway simulate ...`; returns the process exit code.
pub fn main(_args: &[String]) -> i32 {
    eprintln!("simulator not written yet");
    2
}
