//! The candidates the bench compares: leaderrun, and the elections a user would pick instead,
//! each a small program in tests/interop that runs "a job" (a line in a log when it starts and
//! when it stops) while its election says it leads.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Impl {
    Leaderrun,
    LeaderrunPolling,
    ClientGo,
    LeaseManager,
    LeaderElection,
    Python,
}

impl Impl {
    /// The columns of the report, in order: leaderrun first, then the peers.
    pub const COLUMNS: [Impl; 5] = [
        Impl::Leaderrun,
        Impl::ClientGo,
        Impl::LeaseManager,
        Impl::LeaderElection,
        Impl::Python,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Impl::Leaderrun => "leaderrun",
            Impl::LeaderrunPolling => "leaderrun (polling)",
            Impl::ClientGo => "client-go 1.20",
            Impl::LeaseManager => "kube-lease-manager 0.13.1",
            Impl::LeaderElection => "kube-leader-election 0.44.0",
            Impl::Python => "Python client 37.0.2",
        }
    }

    pub fn color(self) -> &'static str {
        match self {
            Impl::Leaderrun | Impl::LeaderrunPolling => "#2b7bba",
            Impl::ClientGo => "#27ae60",
            Impl::LeaseManager => "#8e44ad",
            Impl::LeaderElection => "#c0392b",
            Impl::Python => "#e67e22",
        }
    }

    /// Whether its job can end on its own and the election then let go (leaderrun's job, the
    /// Python candidate's timed job); the others are asked to stop with TERM, which each
    /// candidate answers by stopping its job, then releasing as its library offers.
    pub fn job_ends_itself(self) -> bool {
        matches!(
            self,
            Impl::Leaderrun | Impl::LeaderrunPolling | Impl::Python
        )
    }

    /// Whether the job is a child process (leaderrun's `sh -c`) rather than lines logged from
    /// inside the candidate: only then does a handover contain a process's own start and end.
    pub fn runs_a_child(self) -> bool {
        matches!(self, Impl::Leaderrun | Impl::LeaderrunPolling)
    }

    /// Whether a graceful handover waits out the lease: no release (Python), or a standby that
    /// sleeps until the lease it saw ends (kube-lease-manager). Fewer runs for these.
    pub fn handover_waits_for_expiry(self) -> bool {
        matches!(self, Impl::Python | Impl::LeaseManager)
    }
}

/// The peers' programs, built (or found in the cache) before the bench starts.
#[derive(Clone)]
pub struct Peers {
    pub python: PathBuf,
    pub py_script: PathBuf,
    pub client_go: PathBuf,
    pub lease_manager: PathBuf,
    pub leader_election: PathBuf,
}

fn built_by(script: &Path, arg: Option<&str>) -> Result<PathBuf, String> {
    let mut cmd = Command::new(script);
    cmd.args(arg);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            script.display(),
            arg.unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl Peers {
    /// Builds client-go's candidate (from the real API server's source tree, so this may first
    /// build that) and the two Rust crates' candidates (minutes the first time, then cached).
    pub fn build(root: &Path) -> Result<Peers, String> {
        let python = std::env::var_os("LEADERRUN_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        if !python.is_file() {
            return Err(format!(
                "no Python at {} (run .ci/run, or set LEADERRUN_PYTHON)",
                python.display()
            ));
        }
        let interop = root.join("tests/interop");
        eprintln!("building the peers' candidates (tests/interop/build-client-go, build-peer)");
        Ok(Peers {
            python,
            py_script: interop.join("py_candidate.py"),
            client_go: built_by(&interop.join("build-client-go"), None)?,
            lease_manager: built_by(&interop.join("build-peer"), Some("kube-lease-manager"))?,
            leader_election: built_by(&interop.join("build-peer"), Some("kube-leader-election"))?,
        })
    }

    /// The command for a peer candidate with the bench's timings (15 s / 10 s / 2 s); `work` is
    /// the Python job's length (0: until stopped). None for leaderrun.
    pub fn command(
        &self,
        which: Impl,
        kubeconfig: &Path,
        name: &str,
        id: &str,
        log: &Path,
        work: f64,
    ) -> Option<Command> {
        let timings = ["15", "10", "2"];
        let mut c = match which {
            Impl::Leaderrun | Impl::LeaderrunPolling => return None,
            Impl::Python => {
                let mut c = Command::new(&self.python);
                c.arg(&self.py_script)
                    .arg(kubeconfig)
                    .args(["lease", name, id]);
                c.arg(log).args(timings).arg(work.to_string());
                return Some(c);
            }
            Impl::ClientGo => {
                let mut c = Command::new(&self.client_go);
                c.arg(kubeconfig).arg("lease");
                c
            }
            Impl::LeaseManager => {
                let mut c = Command::new(&self.lease_manager);
                c.arg(kubeconfig);
                c
            }
            Impl::LeaderElection => {
                let mut c = Command::new(&self.leader_election);
                c.arg(kubeconfig);
                c
            }
        };
        c.args([name, id]).arg(log).args(timings);
        Some(c)
    }
}
