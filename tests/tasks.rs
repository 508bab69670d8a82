//! Tasks against a real daemon: 202 + Location, ?wait, logs as JSON lines and SSE, cancel,
//! and persistence across a restart.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::Daemon;
use serde_json::{json, Value};

/// Enough rows that a throttled backup takes a few seconds.
fn fill(root: &common::Client, n: usize) {
    for i in 0..n {
        let r = root.post(
            "/access/groups",
            json!({"groupid": format!("g{i:04}"), "comment": "x".repeat(2000)}),
        );
        assert_eq!(r.status, 201);
    }
}

#[test]
fn task_lifecycle_wait_and_logs() {
    let d = Daemon::start();
    let root = d.root();
    let r = root.post("/nodes/localhost/store-backup", json!({"name": "first"}));
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/tasks/{id}").as_str())
    );
    let t = root.get(&format!("/tasks/{id}?wait=30"));
    assert_eq!(t.body["state"], "succeeded", "{}", t.text);
    let path = t.body["result"]["path"].as_str().expect("path");
    assert!(std::path::Path::new(path).exists());
    // The backup is a usable SQLite database holding root@local.
    let conn = rusqlite::Connection::open(path).expect("open backup");
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM objects WHERE kind = 'user' AND id = 'root@local'",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(n, 1);
    // Same name again: conflict, nothing queued.
    assert_eq!(
        root.post("/nodes/localhost/store-backup", json!({"name": "first"}))
            .status,
        409
    );
    // Bad input.
    assert_eq!(
        root.post("/nodes/localhost/store-backup", json!({"name": "../etc"}))
            .pointers(),
        vec!["/name"]
    );
    assert_eq!(
        root.post(
            "/nodes/localhost/store-backup",
            json!({"pages_per_step": 0})
        )
        .pointers(),
        vec!["/pages_per_step"]
    );
    // Log as JSON lines.
    let log = root.get(&format!("/tasks/{id}/log"));
    let lines: Vec<Value> = log
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(lines.len() >= 3);
    assert!(lines.iter().any(|l| l["message"] == "TASK OK"));
    assert_eq!(lines[0]["seq"], 1);
    let since = root.get(&format!("/tasks/{id}/log?since=2"));
    assert!(since
        .text
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).expect("line")["seq"]
            .as_i64()
            .expect("seq")
            > 2));
    // Listing and filtering.
    let list = root.get("/tasks?state=succeeded&type=store_backup");
    assert!(list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|t| t["id"] == id.as_str()));
    assert_eq!(
        root.get("/tasks/00000000-0000-0000-0000-000000000000")
            .status,
        404
    );
    assert_eq!(root.get("/tasks/not-a-task").status, 400);
    // Cancelling a finished task conflicts.
    assert_eq!(root.delete(&format!("/tasks/{id}")).status, 409);
}

#[test]
fn cancel_and_sse_stream() {
    let d = Daemon::start();
    let root = d.root();
    fill(&root, 200);
    let r = root.post(
        "/nodes/localhost/store-backup",
        json!({"name": "slow", "pages_per_step": 1, "step_pause_ms": 50}),
    );
    assert_eq!(r.status, 202);
    let id = r.body["id"].as_str().expect("id").to_string();
    // Follow it over SSE in a thread.
    let url = format!("{}/api/v1/tasks/{id}/log", d.endpoint);
    let token = root.token.clone().expect("token");
    let reader = std::thread::spawn(move || {
        let resp = ureq::get(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .set("Accept", "text/event-stream")
            .call()
            .expect("sse");
        assert_eq!(resp.content_type(), "text/event-stream");
        let mut events = Vec::new();
        for line in BufReader::new(resp.into_reader()).lines() {
            let line = line.expect("line");
            if let Some(ev) = line.strip_prefix("event: ") {
                events.push(ev.to_string());
            }
        }
        events
    });
    std::thread::sleep(Duration::from_millis(700));
    let c = root.delete(&format!("/tasks/{id}"));
    assert_eq!(c.status, 202, "{}", c.text);
    assert_eq!(c.body["cancel_requested"], true);
    let t = root.get(&format!("/tasks/{id}?wait=30"));
    assert_eq!(t.body["state"], "cancelled", "{}", t.text);
    assert_eq!(t.body["problem"]["status"], 409);
    let events = reader.join().expect("reader");
    assert!(
        events.iter().filter(|e| *e == "log").count() >= 2,
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("end"));
    // Nothing half-made: no partial or final file.
    let dir = d.data().join("backups");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn tasks_and_logs_persist_across_restart() {
    let mut d = Daemon::start();
    let root = d.root();
    fill(&root, 150);
    let done = root.post(
        "/nodes/localhost/store-backup?wait=30",
        json!({"name": "kept"}),
    );
    assert_eq!(done.body["state"], "succeeded");
    let done_id = done.body["id"].as_str().expect("id").to_string();
    let slow = root.post(
        "/nodes/localhost/store-backup",
        json!({"name": "interrupted", "pages_per_step": 1, "step_pause_ms": 100}),
    );
    let slow_id = slow.body["id"].as_str().expect("id").to_string();
    std::thread::sleep(Duration::from_millis(500));
    // Kill hard: the running task cannot finish.
    let _ = d.stop(nix::sys::signal::Signal::SIGKILL);
    d.spawn();
    let root = d.root();
    let t = root.get(&format!("/tasks/{done_id}"));
    assert_eq!(t.body["state"], "succeeded");
    assert!(root
        .get(&format!("/tasks/{done_id}/log"))
        .text
        .contains("TASK OK"));
    let t = root.get(&format!("/tasks/{slow_id}"));
    assert_eq!(t.body["state"], "failed", "{}", t.text);
    assert!(t.body["problem"]["type"]
        .as_str()
        .expect("type")
        .ends_with("task-interrupted"));
    assert!(root
        .get(&format!("/tasks/{slow_id}/log"))
        .text
        .contains("interrupted"));
}
