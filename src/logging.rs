//! Logs on stderr through tracing-subscriber: text or JSON, level from -v/-q or RUST_LOG.
//! Written by a thread of their own: a stderr that blocks (a full pipe) delays or drops log
//! lines, never the run loop. Lines still queued are written when the guard returned by
//! `init` is dropped, at exit.

use tracing_subscriber::EnvFilter;

/// How much to log, and how: what -v/-q and --log-format say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// -v counted minus -q counted: 0 is info.
    pub verbosity: i32,
    pub json: bool,
}

pub fn init(settings: Settings) -> tracing_appender::non_blocking::WorkerGuard {
    let level = match settings.verbosity {
        i32::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Our own level from -v/-q; libraries stay at warn unless RUST_LOG says otherwise.
    // kube_client is off: it logs the same failures we report, without their context.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,kube_client=off,leaderrun={level}")));
    // 1024 lines queued at most (the default, 128,000, preallocates megabytes); past that,
    // lines are dropped rather than blocking.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(1024)
        .lossy(true)
        .thread_name("leaderrun-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = if settings.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    guard
}
