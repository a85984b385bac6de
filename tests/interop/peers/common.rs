//! What both Rust peer candidates share: the command line of tests/interop's candidates, the
//! job's log lines, and a kube client from a kubeconfig file.
//!
//! Usage: CANDIDATE KUBECONFIG NAME IDENTITY LOG LEASE RENEW RETRY (whole seconds)
//!
//! While leading it logs "start IDENTITY 0 NANOS" to LOG; when it stops leading, or on TERM,
//! "stop IDENTITY 0 NANOS". On TERM it then releases the lock as the crate offers, and exits.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Args {
    pub kubeconfig: String,
    pub name: String,
    pub id: String,
    pub log: String,
    pub lease: u64,
    pub renew: u64,
    // kube-lease-manager has no retry period.
    #[allow(dead_code)]
    pub retry: u64,
}

pub fn args() -> Args {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let secs = |s: &String| {
        s.parse::<u64>().unwrap_or_else(|_| {
            eprintln!("{s:?} is not whole seconds");
            std::process::exit(64)
        })
    };
    if a.len() != 7 {
        eprintln!("usage: KUBECONFIG NAME IDENTITY LOG LEASE RENEW RETRY");
        std::process::exit(64);
    }
    Args {
        kubeconfig: a[0].clone(),
        name: a[1].clone(),
        id: a[2].clone(),
        log: a[3].clone(),
        lease: secs(&a[4]),
        renew: secs(&a[5]),
        retry: secs(&a[6]),
    }
}

/// The job: a line when it starts and when it stops, as the bench's other candidates write.
pub struct Job {
    log: String,
    id: String,
    running: bool,
}

impl Job {
    pub fn new(a: &Args) -> Job {
        Job {
            log: a.log.clone(),
            id: a.id.clone(),
            running: false,
        }
    }

    // kube-lease-manager's candidate releases through its manager, whatever it holds.
    #[allow(dead_code)]
    pub fn running(&self) -> bool {
        self.running
    }

    pub fn set(&mut self, leading: bool) {
        if leading != self.running {
            self.running = leading;
            let what = if leading { "start" } else { "stop" };
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_nanos();
            let line = format!("{what} {} 0 {nanos}\n", self.id);
            let written = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.log)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                eprintln!("{}: {e}", self.log);
            }
        }
    }
}

pub async fn client(a: &Args) -> kube::Client {
    let made = async {
        let kc = kube::config::Kubeconfig::read_from(&a.kubeconfig).map_err(|e| e.to_string())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        kube::Client::try_from(cfg).map_err(|e| e.to_string())
    };
    made.await.unwrap_or_else(|e: String| {
        eprintln!("{}: {e}", a.kubeconfig);
        std::process::exit(78)
    })
}
