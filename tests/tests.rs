//! The project's integration tests, in one binary (one link of kube, tokio and hyper instead of
//! one per suite). Each suite is a module, so its tests keep its name: `run::...`,
//! `chaos::...`, `cluster::...`; run one suite with `cargo test --test integration chaos::`.

mod common;

mod bad_input;
mod chaos;
mod ci_scripts;
mod cluster;
mod deploy;
mod docs;
mod edges;
mod events;
mod features;
mod guard;
mod guard_rules;
mod health;
mod house;
mod inspect;
mod interop;
mod lastrun;
mod plugin;
mod rbac;
mod record_props;
mod run;
mod service;
mod standby;
mod supervision;
mod tls;
