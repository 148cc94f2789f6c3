//! A command run the way a person runs it, at a terminal: under util-linux
//! `script`, which gives the command a pseudo-terminal for stdin, stdout and
//! stderr and copies what appears on it, so tests see exactly that.

use std::ffi::OsString;
use std::process::{Command, ExitStatus, Stdio};

/// What a command showed at its terminal.
#[derive(Debug)]
pub struct Screen {
    /// Its exit status (`script -e` passes the command's on).
    pub status: ExitStatus,
    /// Everything on the terminal, stdout and stderr interleaved as shown,
    /// with the terminal's `\r\n` line ends made `\n`.
    pub text: String,
}

impl Screen {
    /// The text without ANSI colour sequences.
    #[must_use]
    pub fn plain(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut chars = self.text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters final-byte (a letter).
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Whether the terminal was sent colour.
    #[must_use]
    pub fn has_colour(&self) -> bool {
        self.text.contains("\u{1b}[")
    }
}

/// Runs `cmd` (built with `env_clear`, so its environment is what it set)
/// at a pseudo-terminal and returns what it showed there.
///
/// # Panics
/// If `script` cannot be started.
#[must_use]
pub fn at_terminal(cmd: &Command) -> Screen {
    let line: Vec<String> =
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| quote(&a.to_owned())).collect();
    let mut script = Command::new("script");
    script.env_clear();
    for (name, value) in cmd.get_envs() {
        if let Some(value) = value {
            script.env(name, value);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    let out = script
        .env("PATH", path)
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm")
        .args(["--quiet", "--return", "--command", &line.join(" "), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run util-linux `script` (a pseudo-terminal for the command)");
    Screen { status: out.status, text: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n") }
}

/// `arg` in single quotes for `sh -c`.
fn quote(arg: &OsString) -> String {
    format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"))
}
