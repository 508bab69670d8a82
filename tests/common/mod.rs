//! Test harness shared by every integration test binary, one file per concern: the daemon
//! (`daemon.rs`), the contract-checking client (`client.rs`), network namespaces and kernel
//! probes (`netns.rs`), the kernel test VM and skips (`kernel_vm.rs`), test inputs
//! (`fixtures.rs`), the console client (`console.rs`) and the Terraform harness (`tf.rs`).
// Each test binary uses a part of the harness: what one leaves unused is not dead.
#![allow(dead_code, unused_imports)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod client;
mod console;
mod daemon;
mod fixtures;
mod kernel_vm;
mod netns;
pub mod tf;

pub use client::*;
pub use console::*;
pub use daemon::*;
pub use fixtures::*;
pub use kernel_vm::*;
pub use netns::*;

/// Runs a closure when dropped: clean-up (an unmount, say) that must happen even when an
/// assertion fails first.
pub struct Defer<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
