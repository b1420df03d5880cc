//! Structured logs: one JSON object per line on stderr.
//!
//! Every line has `time` (RFC 3339, UTC, milliseconds), `level` and `msg`;
//! request lines add `route`, `method`, `status`, `duration_ms`, `tenant`
//! and, for failures, `error` (a reason, never a value). Request bodies and
//! plaintext are never logged.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};

use crate::sops::time::Timestamp;

/// The current time as RFC 3339 with milliseconds.
pub fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts = Timestamp {
        unix: d.as_secs() as i64,
        nanos: 0,
        offset: 0,
    };
    let secs = ts.rfc3339();
    format!(
        "{}.{:03}Z",
        secs.strip_suffix('Z').unwrap_or(&secs),
        d.subsec_millis()
    )
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns logging off or on for the whole process (the fuzz target runs the
/// handlers millions of times and only checks their answers).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Writes one log line with extra fields.
pub fn log(level: &str, msg: &str, fields: Vec<(&str, Value)>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut m = Map::with_capacity(fields.len() + 3);
    m.insert("time".into(), Value::String(now()));
    m.insert("level".into(), Value::String(level.into()));
    m.insert("msg".into(), Value::String(msg.into()));
    for (k, v) in fields {
        m.insert(k.into(), v);
    }
    let mut line = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
    line.push(b'\n');
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&line);
}

/// An info line.
pub fn info(msg: &str, fields: Vec<(&str, Value)>) {
    log("info", msg, fields);
}

/// A warning line.
pub fn warn(msg: &str, fields: Vec<(&str, Value)>) {
    log("warn", msg, fields);
}

/// An error line.
pub fn error(msg: &str, fields: Vec<(&str, Value)>) {
    log("error", msg, fields);
}
