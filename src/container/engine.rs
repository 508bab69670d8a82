//! Containers as a [`crate::guest::Engine`].

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{ContainerError, Containers, KIND};
use crate::store::Object;

impl crate::guest::Engine for Containers {
    type Error = ContainerError;

    fn kind(&self) -> &'static str {
        KIND
    }
    fn collection(&self) -> &'static str {
        "containers"
    }
    fn get(&self, id: &str) -> Result<Object, ContainerError> {
        Containers::get(self, id)
    }
    fn status(&self, id: &str) -> Value {
        Containers::status(self, id)
    }
    fn running(&self, id: &str) -> bool {
        Containers::running(self, id)
    }
    fn create(&self, id: u32, body: &Value) -> Result<Object, ContainerError> {
        Containers::create(self, id, body)
    }
    fn update(&self, id: &str, patch: &Value, m: Option<i64>) -> Result<Object, ContainerError> {
        Containers::update(self, id, patch, m)
    }
    fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        Containers::delete(self, id, force)
    }
    fn start(&self, id: &str) -> Result<(), ContainerError> {
        Containers::start(self, id).map(drop)
    }
    fn stop(&self, id: &str) -> Result<(), ContainerError> {
        Containers::stop(self, id).map(drop)
    }
    fn shutdown(&self, id: &str, t: Duration) -> Result<(), ContainerError> {
        Containers::shutdown(self, id, t).map(drop)
    }
    fn reboot(&self, id: &str, t: Duration) -> Result<(), ContainerError> {
        Containers::reboot(self, id, t).map(drop)
    }
    fn suspend(&self, id: &str, on: bool) -> Result<(), ContainerError> {
        self.freeze(id, on).map(drop)
    }
    fn snapshot(&self, id: &str, name: &str, d: Option<&str>) -> Result<(), ContainerError> {
        Containers::snapshot(self, id, name, d).map(drop)
    }
    fn revert(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        self.rollback(id, name).map(drop)
    }
    fn delete_snapshot(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        Containers::delete_snapshot(self, id, name)
    }
    fn make_template(&self, id: &str) -> Result<(), ContainerError> {
        Containers::make_template(self, id).map(drop)
    }
    fn console_log(&self, id: &str) -> Result<PathBuf, ContainerError> {
        Containers::console_log(self, id)
    }
    fn console_input(&self, id: &str, data: &[u8]) -> Result<(), ContainerError> {
        Containers::console_input(self, id, data)
    }
}
