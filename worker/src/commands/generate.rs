//! `student-worker completions SHELL` and `student-worker man`: a shell's
//! completion script and the man page, generated from the command line's
//! own definition so they never drift from it.

use clap::Args;
use clap_complete::Shell;

use super::error::CommandError;
use super::output;

/// `completions`' arguments.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `completions --help`'s examples.
pub const COMPLETIONS_EXAMPLES: &str = "\
  student-worker completions bash > ~/.local/share/bash-completion/completions/student-worker
  student-worker completions zsh > \"${fpath[1]}/_student-worker\"
  student-worker completions fish > ~/.config/fish/completions/student-worker.fish";

/// `man`'s arguments (none).
#[derive(Debug, Clone, Args)]
pub struct ManArgs {}

/// `man --help`'s examples.
pub const MAN_EXAMPLES: &str = "\
  student-worker man | man -l -
  student-worker man > /usr/local/share/man/man1/student-worker.1";

/// Prints `shell`'s completion script for `cli`.
pub fn completions(shell: Shell, cli: &mut clap::Command) -> Result<(), CommandError> {
    let name = cli.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, cli, name, &mut script);
    output::bytes(&script)?;
    Ok(())
}

/// Prints the man page of `cli`: the command's own page, then one for each
/// subcommand (and theirs), so every flag of every subcommand is in it.
pub fn man(cli: &clap::Command) -> Result<(), CommandError> {
    let mut page = Vec::new();
    render(cli, cli.get_name(), &mut page)?;
    output::bytes(&page)?;
    Ok(())
}

fn render(command: &clap::Command, name: &str, page: &mut Vec<u8>) -> Result<(), CommandError> {
    clap_mangen::Man::new(command.clone())
        .title(name)
        .render(page)
        .map_err(|source| CommandError::Io { what: "rendering the man page".into(), source })?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        render(sub, &format!("{name}-{}", sub.get_name()), page)?;
    }
    Ok(())
}
