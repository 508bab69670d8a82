//! VMs as a [`crate::guest::Engine`].

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{VmError, Vms, KIND};
use crate::store::Object;

impl crate::guest::Engine for Vms {
    type Error = VmError;

    fn kind(&self) -> &'static str {
        KIND
    }
    fn collection(&self) -> &'static str {
        "vms"
    }
    fn get(&self, id: &str) -> Result<Object, VmError> {
        Vms::get(self, id)
    }
    fn status(&self, id: &str) -> Value {
        Vms::status(self, id)
    }
    fn running(&self, id: &str) -> bool {
        Vms::running(self, id)
    }
    fn create(&self, id: u32, body: &Value) -> Result<Object, VmError> {
        Vms::create(self, id, body)
    }
    fn update(&self, id: &str, patch: &Value, m: Option<i64>) -> Result<Object, VmError> {
        Vms::update(self, id, patch, m)
    }
    fn delete(&self, id: &str, force: bool) -> Result<(), VmError> {
        Vms::delete(self, id, force)
    }
    fn start(&self, id: &str) -> Result<(), VmError> {
        Vms::start(self, id).map(drop)
    }
    fn stop(&self, id: &str) -> Result<(), VmError> {
        Vms::stop(self, id).map(drop)
    }
    fn shutdown(&self, id: &str, t: Duration) -> Result<(), VmError> {
        Vms::shutdown(self, id, t).map(drop)
    }
    fn reboot(&self, id: &str, t: Duration) -> Result<(), VmError> {
        Vms::reboot(self, id, t).map(drop)
    }
    fn suspend(&self, id: &str, on: bool) -> Result<(), VmError> {
        self.pause(id, on).map(drop)
    }
    fn snapshot(&self, id: &str, name: &str, d: Option<&str>) -> Result<(), VmError> {
        Vms::snapshot(self, id, name, d).map(drop)
    }
    fn revert(&self, id: &str, name: &str) -> Result<(), VmError> {
        self.restore(id, name).map(drop)
    }
    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), VmError> {
        Vms::delete_snapshot(self, id, name)
    }
    fn make_template(&self, id: &str) -> Result<(), VmError> {
        Vms::make_template(self, id).map(drop)
    }
    fn console_log(&self, id: &str) -> Result<PathBuf, VmError> {
        Vms::console_log(self, id)
    }
    /// The serial line takes text: bytes that are not UTF-8 are replaced.
    fn console_input(&self, id: &str, data: &[u8]) -> Result<(), VmError> {
        self.serial_input(id, &String::from_utf8_lossy(data))
    }
}
