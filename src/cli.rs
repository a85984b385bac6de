//! The command line, defined once: `--help`, the man page and the completions
//! are generated from these definitions.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::lock::Kind;
use crate::settings::{parse_duration, Timing};

/// Run a command only while holding a Kubernetes leader-election lock.
///
/// Among all copies started with the same lock, only the one holding the Lease (or
/// ConfigMap) runs the command; the others wait and take over when it ends or dies.
#[derive(Parser, Debug)]
#[command(name = "leaderrun", version, after_help = crate::exit::help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Acquire the lock, run the command while leader, release when it ends (the default).
    Run(RunArgs),
    /// Show who holds a lock, since when, and whether it has expired.
    Inspect(InspectArgs),
    /// Clear the holder of a lock (for a holder that is gone), with an optimistic write.
    ForceRelease(ForceReleaseArgs),
    /// Ask the holder to let go: it stops its child, then releases; waits for that.
    StepDown(StepDownArgs),
}

/// `--lock lease|configmap`: the lock layer's kinds, named and explained for the CLI here, so
/// that the lock layer knows nothing of clap.
impl ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Self] {
        &[Kind::Lease, Kind::Configmap]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            Kind::Lease => "A coordination.k8s.io/v1 Lease",
            Kind::Configmap => {
                "A v1 ConfigMap with the record in the control-plane.alpha.kubernetes.io/leader annotation"
            }
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which lock, and how to reach the API: shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct LockArgs {
    /// Kind of lock object.
    #[arg(long, value_enum, default_value = "lease", env = "LEADERRUN_LOCK")]
    pub lock: Kind,
    /// Name of the Lease or ConfigMap (a DNS-1123 subdomain). Required, except by `inspect`,
    /// which without it lists the locks leaderrun manages.
    #[arg(long, env = "LEADERRUN_NAME")]
    pub name: Option<String>,
    /// Namespace [default: with a kubeconfig, its context's ("default" when it names none);
    /// without one, in a pod, the service account's].
    #[arg(short = 'n', long, env = "LEADERRUN_NAMESPACE")]
    pub namespace: Option<String>,
    /// Path to a kubeconfig [default: $KUBECONFIG, else ~/.kube/config, else in-cluster].
    #[arg(long, env = "LEADERRUN_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use [default: the current context].
    #[arg(long, env = "LEADERRUN_CONTEXT")]
    pub context: Option<String>,
}

/// The election's timing, one group: it converts into the `Timing` the safety rule checks.
#[derive(Args, Debug, Clone)]
pub struct TimingArgs {
    /// How long others wait after last seeing the record change before taking over.
    #[arg(long, value_parser = parse_duration, default_value = "15s", env = "LEADERRUN_LEASE_DURATION")]
    pub lease_duration: Duration,
    /// How long the leader may go without a successful renew before it stops the child.
    #[arg(long, value_parser = parse_duration, default_value = "10s", env = "LEADERRUN_RENEW_DEADLINE")]
    pub renew_deadline: Duration,
    /// Interval between renews and between tries to acquire.
    #[arg(long, value_parser = parse_duration, default_value = "2s", env = "LEADERRUN_RETRY_PERIOD")]
    pub retry_period: Duration,
    /// Time between the stop signal and KILL when the child must stop.
    #[arg(long, value_parser = parse_duration, default_value = "3s", env = "LEADERRUN_KILL_GRACE")]
    pub kill_grace: Duration,
}

impl From<&TimingArgs> for Timing {
    fn from(t: &TimingArgs) -> Timing {
        Timing {
            lease_duration: t.lease_duration,
            renew_deadline: t.renew_deadline,
            retry_period: t.retry_period,
            kill_grace: t.kill_grace,
        }
    }
}

impl From<&LockArgs> for crate::client::Target {
    fn from(l: &LockArgs) -> Self {
        crate::client::Target {
            kubeconfig: l.kubeconfig.clone(),
            context: l.context.clone(),
            namespace: l.namespace.clone(),
        }
    }
}

impl Command {
    /// The logging flags, which every subcommand has.
    pub fn log(&self) -> &LogArgs {
        match self {
            Command::Run(a) => &a.log,
            Command::Inspect(a) => &a.log,
            Command::ForceRelease(a) => &a.log,
            Command::StepDown(a) => &a.log,
        }
    }
}

impl From<&LogArgs> for crate::logging::Settings {
    fn from(a: &LogArgs) -> Self {
        crate::logging::Settings {
            verbosity: i32::from(a.verbose) - i32::from(a.quiet),
            json: a.log_format == LogFormat::Json,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "LEADERRUN_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (repeat for less).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = crate::exit::help())]
pub struct RunArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// Identity written as holder [default: $POD_NAME, else the host name, plus a random suffix].
    #[arg(long, env = "LEADERRUN_IDENTITY")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Exit at once if another holds the lock, instead of waiting. A lock whose own
    /// timestamps show it lapsed over a minute ago is watched for one lease duration
    /// and taken if it does not change.
    #[arg(long, env = "LEADERRUN_NO_WAIT")]
    pub no_wait: bool,
    /// Exit code for --no-wait when the lock is held.
    #[arg(long, default_value_t = crate::exit::LOCK_HELD, requires = "no_wait", env = "LEADERRUN_CONFLICT_EXIT_CODE")]
    pub conflict_exit_code: u8,
    /// Give up waiting for the lock after this long (exit 124).
    #[arg(long, value_parser = parse_duration, env = "LEADERRUN_WAIT_TIMEOUT")]
    pub wait_timeout: Option<Duration>,
    /// Do not release the lock when the child ends; it expires after the lease duration.
    #[arg(long, env = "LEADERRUN_NO_RELEASE", conflicts_with = "keep_after_exit")]
    pub no_release: bool,
    /// When the child ends, keep holding (and renewing) the lock for this long, then
    /// release and exit (for cron: a copy that fires a little late on another host
    /// does not run the job again).
    #[arg(long, value_parser = parse_duration, env = "LEADERRUN_KEEP_AFTER_EXIT")]
    pub keep_after_exit: Option<Duration>,

    /// Run the job at most once per period D: a copy that becomes leader reads the lock's
    /// last run, and if a run succeeded (exit 0) and ended less than D ago, releases at once
    /// and exits 0 without running the job (a failed run does not count). Per slot with
    /// --slots. Needs the release's record of the run, so not with --no-release.
    #[arg(long, value_name = "D", value_parser = parse_duration, conflicts_with = "no_release", env = "LEADERRUN_ONCE_PER")]
    pub once_per: Option<Duration>,
    /// The signal that starts a stop of the child (lost leadership, step-down, leftovers):
    /// a name with or without SIG (TERM, SIGINT, QUIT) or a number. KILL follows after
    /// --kill-grace. Signals leaderrun receives are forwarded as they are.
    #[arg(long, value_name = "SIG", default_value = "TERM", value_parser = parse_stop_signal, env = "LEADERRUN_STOP_SIGNAL")]
    pub stop_signal: nix::sys::signal::Signal,
    /// At most N copies run the command at once: N locks NAME-0 to NAME-(N-1), of which a
    /// copy holds one (the child gets LEADERRUN_SLOT). With 1, the lock is NAME itself.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000), env = "LEADERRUN_SLOTS")]
    pub slots: u32,
    /// After lost leadership, stop the child and wait for the lock again (a standby once
    /// more) instead of exiting 121. When the child exits on its own, leaderrun still exits
    /// with its status.
    #[arg(long, env = "LEADERRUN_REJOIN")]
    pub rejoin: bool,
    /// Record Kubernetes Events on the lock object ("became leader", "lost leadership",
    /// "stopped leading"); needs RBAC create on events.
    #[arg(long, env = "LEADERRUN_EVENTS")]
    pub events: bool,
    /// Serve /healthz (503 once a leader is past its renew deadline), /readyz (200 while
    /// taking part: a leader renewing on time, or a standby the API server answered within a
    /// lease duration), /leaderz (200 only while leader) and /metrics on this address.
    #[arg(long, value_name = "ADDR", env = "LEADERRUN_HEALTH_ADDR")]
    pub health_addr: Option<std::net::SocketAddr>,
    /// While leading, make the Endpoints of this Service (one without a selector, in the
    /// lock's namespace) this pod's address alone, with the Service's target ports; take it
    /// out again when leadership ends. Needs --pod-ip.
    #[arg(long, value_name = "NAME", env = "LEADERRUN_SERVICE")]
    pub service: Option<String>,
    /// This pod's IP address, for --service (in a pod: env POD_IP from fieldRef status.podIP).
    #[arg(long, value_name = "IP", env = "POD_IP")]
    pub pod_ip: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub log: LogArgs,
    /// The command to run while leader, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = crate::exit::help())]
pub struct InspectArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Print a line each time the holder or renew time changes, until interrupted.
    #[arg(short, long, conflicts_with = "slots")]
    pub watch: bool,
    /// Without --name: the locks leaderrun manages in every namespace (where RBAC allows
    /// listing them), not only in --namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Show every slot of a lock run with --slots N (NAME-0 to NAME-(N-1)).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000), env = "LEADERRUN_SLOTS")]
    pub slots: u32,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = crate::exit::help())]
pub struct ForceReleaseArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// The slot of a lock run with --slots (the object NAME-K).
    #[arg(long, value_name = "K")]
    pub slot: Option<u32>,
    /// Release only if this identity holds the lock.
    #[arg(long)]
    pub holder: Option<String>,
    /// Release whoever holds it (needed without --holder).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Reads a signal as `TERM`, `SIGTERM`, `term` or `15`. Job-control signals that would
/// pause rather than end the child (STOP, TSTP, TTIN, TTOU) are refused.
pub fn parse_stop_signal(s: &str) -> Result<nix::sys::signal::Signal, String> {
    use nix::sys::signal::Signal;
    let t = s.trim();
    let sig = match t.parse::<i32>() {
        Ok(n) => Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"))?,
        Err(_) => {
            let upper = t.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>().map_err(|_| {
                format!("{s:?} is not a signal name (TERM, INT, QUIT, HUP, USR1, ...)")
            })?
        }
    };
    if sig == Signal::SIGSTOP || crate::signals::is_terminal_stop(sig) {
        return Err(format!(
            "{sig} pauses a process rather than ending it; use TERM, INT, QUIT, HUP, ..."
        ));
    }
    Ok(sig)
}

#[derive(Args, Debug, Clone)]
#[command(after_help = crate::exit::help())]
pub struct StepDownArgs {
    #[command(flatten)]
    pub lock: LockArgs,
    /// The slot of a lock run with --slots (the object NAME-K).
    #[arg(long, value_name = "K")]
    pub slot: Option<u32>,
    /// Ask only if this identity holds the lock.
    #[arg(long)]
    pub holder: Option<String>,
    /// How long to wait for the holder to let go (exit 7 after).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
    #[command(flatten)]
    pub log: LogArgs,
}

impl LockArgs {
    /// The object name: NAME, or NAME-K for `--slot K`.
    pub fn object_name(&self, slot: Option<u32>) -> String {
        match slot {
            Some(k) => format!("{}-{k}", self.name()),
            None => self.name().to_string(),
        }
    }

    /// The lock's name (`parse` makes sure every subcommand but `inspect` has one).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// `leaderrun [OPTIONS] -- CMD` means `leaderrun run [OPTIONS] -- CMD`.
/// The name kubectl gives a plugin: installed or linked under it on PATH, leaderrun is
/// `kubectl leaderrun` (kubectl passes every argument after the plugin's name).
pub const KUBECTL_PLUGIN: &str = "kubectl-leaderrun";

/// Parses the command line: the bare form is `run`, and invoked as `kubectl-leaderrun` the
/// help and errors name the command as `kubectl leaderrun`.
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let as_plugin = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == KUBECTL_PLUGIN);
    let mut command = Cli::command();
    if as_plugin {
        command = command.bin_name("kubectl leaderrun");
    }
    let matches = command
        .clone()
        .try_get_matches_from(with_default_subcommand(args))?;
    let cli = Cli::from_arg_matches(&matches)?;
    // --name is optional for `inspect` only (it lists the managed locks without it).
    let lock = match &cli.command {
        Command::Run(a) => Some(&a.lock),
        Command::ForceRelease(a) => Some(&a.lock),
        Command::StepDown(a) => Some(&a.lock),
        _ => None,
    };
    if lock.is_some_and(|l| l.name.is_none()) {
        return Err(command.error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "the following required argument was not provided: --name <NAME> (or LEADERRUN_NAME)",
        ));
    }
    Ok(cli)
}

pub fn with_default_subcommand(args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let explicit = matches!(
        first,
        "run"
            | "inspect"
            | "force-release"
            | "step-down"
            | "help"
            | "-h"
            | "--help"
            | "-V"
            | "--version"
    );
    if args.len() > 1 && !explicit {
        let mut out = Vec::with_capacity(args.len() + 1);
        out.push(args[0].clone());
        out.push(OsString::from("run"));
        out.extend(args.into_iter().skip(1));
        out
    } else {
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_form_is_run() {
        let args = with_default_subcommand(
            ["leaderrun", "--name", "x", "--", "true"]
                .map(OsString::from)
                .to_vec(),
        );
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Run(r) => {
                assert_eq!(r.lock.name(), "x");
                assert_eq!(r.command, vec![OsString::from("true")]);
                assert_eq!(r.timing.lease_duration, Duration::from_secs(15));
            }
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn stop_signals_read_with_or_without_sig_and_as_numbers() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_stop_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_stop_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_stop_signal("3"), Ok(Signal::SIGQUIT));
        assert!(parse_stop_signal("STOP").unwrap_err().contains("pauses"));
        assert!(parse_stop_signal("NOPE")
            .unwrap_err()
            .contains("not a signal name"));
        assert!(parse_stop_signal("99")
            .unwrap_err()
            .contains("not a signal number"));
    }

    #[test]
    fn subcommands_are_not_rewritten() {
        let args = with_default_subcommand(
            ["leaderrun", "inspect", "--name", "x"]
                .map(OsString::from)
                .to_vec(),
        );
        assert!(matches!(
            Cli::try_parse_from(args).unwrap().command,
            Command::Inspect(_)
        ));
    }
}
