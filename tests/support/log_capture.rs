//! Every formatted log line a test binary writes, kept in memory so a test can read the exact
//! audit line its request caused. The subscriber is process-wide: each file installs it once
//! (its own formatter settings) with a clone of one [`Captured`] as the writer.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A test that panicked while holding the lock leaves the bytes intact.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes written so far: where the lines of what a test does next will start.
    #[allow(dead_code)] // only tests/audit_events.rs reads from an offset
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Everything written from byte `from` on.
    pub fn text_from(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.bytes()[from..]).into_owned()
    }
}
