//! kube-emulator's integration tests, in one binary; each suite is a module
//! (`cargo test -p kube-emulator --test emulator http::`).

mod common;

mod binary;
mod differential;
mod http;
mod kube_client;
mod real_clients;
