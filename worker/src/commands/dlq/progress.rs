//! Progress for `dlq replay`: a bar on a terminal (indicatif), plain lines
//! otherwise, so logs and pipes get one line per message.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::output::{self, Unwritten};

/// Where replay reports each message.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar of `len` steps when stderr is a terminal; plain lines otherwise.
    pub fn new(len: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        Self { bar: Some(bar) }
    }

    /// Reports one line (above the bar on a terminal, on stdout otherwise).
    pub fn line(&self, text: &str) -> Result<(), Unwritten> {
        match &self.bar {
            Some(bar) => {
                bar.println(text);
                Ok(())
            }
            None => output::line(text),
        }
    }

    /// One message dealt with.
    pub fn step(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
