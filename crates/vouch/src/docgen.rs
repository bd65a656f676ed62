//! `vouch completions <shell>` and `vouch man`: shell completion scripts and man pages,
//! generated from the command-line definition itself so they never drift from it.

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::Cli;

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vouch", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Print the `vouch(1)` page on stdout, or with `dir` write it and one page per subcommand
/// (`vouch-entry-create.1`, …) there, listing what was written.
pub fn man(dir: Option<&Path>) -> Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("rendering the man page")?;
            std::io::stdout()
                .write_all(&out)
                .context("writing the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            let mut pages: Vec<_> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("vouch") && n.ends_with(".1"))
                .collect();
            pages.sort();
            for p in pages {
                println!("{}", dir.join(p).display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
