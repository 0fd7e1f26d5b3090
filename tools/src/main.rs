//! `credfed`: the command-line tool for provincial operators and departments.
//!
//! It keeps department keys on the department's side, signs record bodies and submits
//! them to a node's HTTPS API, so the department's signature travels with every record.
//! Exit codes: 0 ok · 1 refused by the node · 2 usage · 3 node unreachable · 4 invalid
//! input (nothing submitted) · 5 verification failed · 6 verified but partial (stale or
//! excluded regions, with `verify --partial`) · 7 not verified: the federation
//! authority is not pinned.

mod cli;
mod commands;
mod import;
mod output;
mod xlsx;

use std::process::ExitCode;

use clap::Parser;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What happened and what to do next.
    pub message: String,
}

/// Exit codes.
pub mod exit {
    /// The node refused the request (4xx/5xx).
    pub const REFUSED: u8 = 1;
    /// The node could not be reached.
    pub const UNREACHABLE: u8 = 3;
    /// Local validation failed; nothing was submitted.
    pub const INVALID: u8 = 4;
    /// Offline verification failed.
    pub const UNVERIFIED: u8 = 5;
    /// Verified, but some regions are stale or excluded (`verify --partial`).
    pub const PARTIAL: u8 = 6;
    /// Not verified: no authority key pinned and the manifest not explicitly trusted.
    pub const UNPINNED: u8 = 7;
    /// What was waited for (`person-key … --wait`) has not happened within the time.
    pub const NOT_YET: u8 = 8;
}

impl Failure {
    /// A failure with a code.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::new(exit::INVALID, format!("{e:#}"))
    }
}

/// Settings from a config file become `CREDFED_*` defaults, below the environment and
/// flags: `$CREDFED_CONFIG`, else `$XDG_CONFIG_HOME/credfed/config.toml` or
/// `~/.config/credfed/config.toml`. Keys: node, ca, cert, cert_key, author, key, manifest,
/// output, authority_key.
fn load_config_file() -> Result<(), String> {
    let path = match std::env::var_os("CREDFED_CONFIG") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
                });
            match base {
                Some(b) => b.join("credfed").join("config.toml"),
                None => return Ok(()),
            }
        }
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for (k, v) in table {
        let name = format!("CREDFED_{}", k.to_ascii_uppercase());
        let value = match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        if std::env::var_os(&name).is_none() {
            // SAFETY: single-threaded at this point; nothing else reads the environment yet.
            unsafe { std::env::set_var(&name, value) };
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Err(e) = load_config_file() {
        eprintln!("error: config file: {e}");
        return ExitCode::from(exit::INVALID);
    }
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
