//! `credfed`: the command-line tool for provincial operators and departments.
//!
//! It keeps department keys on the department's side, signs record bodies and submits
//! them to a node's HTTPS API, so the department's signature travels with every record.
//! Exit codes: 0 ok · 1 refused by the node · 2 usage · 3 node unreachable · 4 invalid
//! input (nothing submitted) · 5 verification failed.

mod cli;
mod commands;
mod import;
mod output;

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

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
