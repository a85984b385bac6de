//! leaderrun: run a command only while holding a Kubernetes leader-election lock.
//! The binary is `src/main.rs`; the modules are public for tests and fuzzing.

pub mod cli;
pub mod client;
pub mod docs;
pub mod election;
pub mod events;
pub mod exit;
#[cfg(test)]
mod fake_lock;
pub mod guard;
pub mod health;
pub mod inspect;
pub mod lastrun;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod proc_tree;
pub mod reaper;
pub mod record;
pub mod report;
pub mod run;
pub mod settings;
pub mod signals;
pub mod stepdown;
pub mod supervisor;
