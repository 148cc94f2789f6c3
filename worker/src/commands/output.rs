//! What a command prints on stdout for a person or a script. A reader that
//! stops early (`| head`) closes the pipe: that ends the command quietly
//! instead of panicking the way `println!` does.

use std::fmt::Display;
use std::io::Write;

/// Stdout could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unwritten {
    /// Whoever read stdout stopped reading (`| head`): nothing more to say.
    #[error("stdout was closed")]
    Closed,
    /// Any other failure (a full disk behind a redirect).
    #[error("writing to stdout: {0}")]
    Failed(String),
}

impl From<std::io::Error> for Unwritten {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Failed(e.to_string()),
        }
    }
}

/// Writes `text` and a newline to stdout.
pub fn line(text: impl Display) -> Result<(), Unwritten> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Writes `bytes` to stdout as they are.
pub fn bytes(bytes: &[u8]) -> Result<(), Unwritten> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}
