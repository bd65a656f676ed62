//! `vouch`: one binary for every role. `main` is glue: parse, load configuration, dispatch.

mod bench;
mod cli;
mod commands;
mod config;
mod dev;
mod docgen;
mod output;
mod spread;
mod tee;
mod tpm;

use clap::Parser;

/// Whether stdout is a pipe or a socket (`vouch … | head`), not a terminal or a file.
fn stdout_is_pipe() -> bool {
    // SAFETY: fstat on fd 1 with a zeroed stat buffer it fills; no memory is shared.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(1, &mut st) == 0
            && matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK)
    }
}

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // A process that serves sockets keeps SIGPIPE ignored (as the Rust runtime sets it): a
    // client that hangs up makes one write fail with EPIPE, and only that connection ends.
    // A short command printing into a pipe behaves like other Unix tools when the reader goes
    // away (`vouch … | head`): it ends quietly instead of panicking on a broken pipe.
    if !cli.command.serves_sockets() && stdout_is_pipe() {
        // SAFETY: called before any thread exists; SIG_DFL is always a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("VOUCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log_level()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One object a line: the event's fields, and the request's span (its request id).
        cli::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
