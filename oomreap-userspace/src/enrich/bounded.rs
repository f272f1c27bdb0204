//! Reads that take a process's mmap_lock (/proc/PID/maps, /proc/PID/smaps), run off the
//! caller's thread and given up after a bound.
//!
//! That lock is the very one an OOM victim's trouble is often about: a read queued behind
//! a writer would stall the intake as long as the jam lasts. The read runs on a thread of
//! its own; the caller waits at most the bound; while one read is still stuck, no other
//! starts (so a jam costs one thread, not one per kill).
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

/// Runs reads one at a time, each waited for at most `wait`.
pub struct BoundedReader {
    wait: Duration,
    /// Set while a read has not come back.
    busy: Arc<AtomicBool>,
}

impl BoundedReader {
    pub fn new(wait: Duration) -> Self {
        Self {
            wait,
            busy: Arc::default(),
        }
    }

    /// `read`'s result, or why there is none: it did not answer within the bound, or an
    /// earlier read is still stuck.
    pub fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(
                "not read: an earlier read of a process's memory map is still blocked".into(),
            );
        }
        let (tx, rx) = mpsc::channel();
        let busy = Arc::clone(&self.busy);
        let spawned = std::thread::Builder::new()
            .name("oomreap-mmread".into())
            .spawn(move || {
                let _ = tx.send(read());
                busy.store(false, Ordering::Release);
            });
        if let Err(err) = spawned {
            self.busy.store(false, Ordering::Release);
            return Err(format!("cannot start a thread to read it: {err}"));
        }
        rx.recv_timeout(self.wait).unwrap_or_else(|_| {
            Err(format!(
                "its memory map did not answer within {} ms (its mmap_lock is held)",
                self.wait.as_millis()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_does_not_answer_is_given_up_and_blocks_the_next() {
        let reader = BoundedReader::new(Duration::from_millis(20));
        let (release, held) = mpsc::channel::<()>();
        let why = reader
            .run(move || {
                let _ = held.recv();
                Ok(1)
            })
            .unwrap_err();
        assert!(why.contains("did not answer within 20 ms"), "{why}");
        let why = reader.run(|| Ok(2)).unwrap_err();
        assert!(why.contains("still blocked"), "{why}");
        // Once it returns, reads run again.
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while reader.busy.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reader.run(|| Ok(3)), Ok(3));
    }
}
