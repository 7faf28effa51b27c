//! Shell completions and man pages, generated from the clap definitions so
//! they never drift from the real flags (clap_complete, clap_mangen).

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: Shell,
}

/// Print the completion script: `kpackfs completions bash > /etc/bash_completion.d/kpackfs`.
pub fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "kpackfs", &mut out);
    super::print(&String::from_utf8_lossy(&out))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ManArgs {
    /// Write kpackfs.1 and one kpackfs-<command>.1 per command here (default: print kpackfs(1)).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Print kpackfs(1), or write every page into a directory.
pub fn man(args: ManArgs) -> Result<ExitCode> {
    let cmd = super::Cli::command();
    let Some(dir) = args.out else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        super::print(&String::from_utf8_lossy(&out))?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    // The top page, then one per subcommand (named as git's are: kpackfs-mount.1).
    let mut pages = vec![("kpackfs".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("kpackfs-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
    }
    super::eprint(&format!("kpackfs: wrote {written} man pages into {}\n", dir.display()));
    Ok(ExitCode::SUCCESS)
}
