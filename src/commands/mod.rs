//! The one-shot subcommands: `podmedic fix` (the engine on files), `podmedic audit` (the engine
//! on what a live cluster holds) and `podmedic certs` (certificates for the webhook's Service).
//!
//! Each takes a plain configuration (made from the flags by `cli`) and returns the process's exit code;
//! errors are `anyhow` errors, printed once by `main`.

pub mod audit;
pub mod certs;
pub mod fix;
pub mod report;
