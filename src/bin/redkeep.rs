//! The `redkeep` binary: everything lives in `redkeep::cli`.

fn main() -> std::process::ExitCode {
    ignore_file_size_signal();
    redkeep::cli::main()
}

/// Sets SIGXFSZ to ignored. Under a file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`), a
/// write past it then fails with "File too large", which the command reports and cleans up
/// after (a backup removes its unfinished archive), instead of the kernel killing the process
/// part way with its temp files left behind.
fn ignore_file_size_signal() {
    // SAFETY: called first thing in `main`, before any other thread exists; `SIG_IGN` is a
    // disposition, not a handler, so no code of ours runs in signal context.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
