//! The wall clock, in the unit the event logs use (ms since the epoch). One small module so
//! the model (running tasks are timed up to "now") and the API (running applications) read
//! time the same way without either depending on the other.

use std::time::SystemTime;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
