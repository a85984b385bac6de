//! leaderrun: run a command only while holding a Kubernetes leader-election lock.
//! The binary is `src/main.rs`; the modules are public for the integration tests and the
//! simulation. The guard, the /proc scan and the signal rules are the crate `leaderrun-guard`
//! (guard/), re-exported here under their old names.

pub mod cli;
pub mod client;
pub mod docs;
pub mod election;
pub mod events;
pub mod exit;
pub mod force_release;
pub use leaderrun_guard as guard;
pub mod health;
pub mod inspect;
pub mod lastrun;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod reaper;
pub mod record;
pub mod report;
pub mod run;
pub mod service;
pub mod settings;
pub use leaderrun_guard::{proc_tree, signals};
pub mod standby;
pub mod stepdown;
pub mod supervisor;
