//! `linkmeter completions <shell>` and the man pages, generated from the clap definitions.

use std::path::PathBuf;

use crate::cli::{Failure, command};

/// Examples shown by `linkmeter completions --help`.
pub(crate) const COMPLETIONS_EXAMPLES: &str = "Examples:
  linkmeter completions bash > /etc/bash_completion.d/linkmeter
  linkmeter completions zsh > \"${fpath[1]}/_linkmeter\"";

/// Options of `linkmeter completions`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to generate for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Options of `linkmeter man`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ManArgs {
    /// Directory to write `linkmeter.1` and `linkmeter-<subcommand>.1` into.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Prints the completion script for `args.shell`.
///
/// # Errors
///
/// Never, in practice (writing to stdout).
pub(crate) fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = command();
    clap_complete::generate(args.shell, &mut cmd, "linkmeter", &mut std::io::stdout());
    Ok(())
}

/// Writes the man pages into `args.dir`.
///
/// # Errors
///
/// The directory or a file cannot be written.
pub(crate) fn man(args: &ManArgs) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::runtime(format!("writing man pages to {}: {e}", args.dir.display()))
    };
    std::fs::create_dir_all(&args.dir).map_err(fail)?;
    let cmd = command();
    let mut pages = vec![("linkmeter".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("linkmeter-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out).map_err(fail)?;
        std::fs::write(args.dir.join(format!("{name}.1")), out).map_err(fail)?;
    }
    Ok(())
}
