//! Reads that take a process's mmap_lock (/proc/PID/maps, /proc/PID/smaps), run off the
//! caller's thread and given up after a bound.
//!
//! That lock is the very one an OOM victim's trouble is often about: a read queued behind
//! a writer would stall the intake as long as the jam lasts. The reads run on a thread of
//! their own; the caller waits at most the bound; while one read is still stuck, no other
//! is queued behind it.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

/// A job for the reader's thread, given the thread's own state.
type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Runs reads one at a time on a thread of its own, each waited for at most `wait`. The
/// thread keeps state `S` between reads (made there, so it need not be `Send`: a symbolizer
/// and its cache of parsed files, for example) and starts with the first read.
pub struct BoundedReader<S> {
    wait: Duration,
    make: Option<Box<dyn FnOnce() -> S + Send>>,
    jobs: Option<mpsc::Sender<Job<S>>>,
    /// Set while a read has not come back.
    busy: Arc<AtomicBool>,
}

impl<S: 'static> BoundedReader<S> {
    pub fn new(wait: Duration, make: impl FnOnce() -> S + Send + 'static) -> Self {
        Self {
            wait,
            make: Some(Box::new(make)),
            jobs: None,
            busy: Arc::default(),
        }
    }

    /// `read`'s result, or why there is none: it did not answer within the bound, or an
    /// earlier read is still stuck.
    pub fn run<T: Send + 'static>(
        &mut self,
        read: impl FnOnce(&mut S) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(
                "not read: an earlier read of a process's memory map is still blocked".into(),
            );
        }
        let (tx, rx) = mpsc::channel();
        let busy = Arc::clone(&self.busy);
        let job: Job<S> = Box::new(move |state| {
            let result = read(state);
            // Free before answering: the caller may ask again as soon as it has the answer.
            busy.store(false, Ordering::Release);
            let _ = tx.send(result);
        });
        if let Err(why) = self.jobs().and_then(|jobs| {
            jobs.send(job)
                .map_err(|_| "the reading thread is gone".to_owned())
        }) {
            self.busy.store(false, Ordering::Release);
            return Err(why);
        }
        rx.recv_timeout(self.wait).unwrap_or_else(|_| {
            Err(format!(
                "its memory map did not answer within {} ms (its mmap_lock is held)",
                self.wait.as_millis()
            ))
        })
    }

    /// The thread's queue, starting the thread the first time.
    fn jobs(&mut self) -> Result<&mpsc::Sender<Job<S>>, String> {
        if self.jobs.is_none() {
            let make = self
                .make
                .take()
                .ok_or("the reading thread could not start")?;
            let (tx, rx) = mpsc::channel::<Job<S>>();
            std::thread::Builder::new()
                .name("oomreap-mmread".into())
                .spawn(move || {
                    let mut state = make();
                    for job in rx {
                        job(&mut state);
                    }
                })
                .map_err(|err| format!("cannot start a thread to read it: {err}"))?;
            self.jobs = Some(tx);
        }
        self.jobs
            .as_ref()
            .ok_or_else(|| "no reading thread".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_does_not_answer_is_given_up_and_blocks_the_next() {
        let mut reader = BoundedReader::new(Duration::from_millis(20), || 0u32);
        let (release, held) = mpsc::channel::<()>();
        let why = reader
            .run(move |_| {
                let _ = held.recv();
                Ok(1)
            })
            .unwrap_err();
        assert!(why.contains("did not answer within 20 ms"), "{why}");
        let why = reader.run(|_| Ok(2)).unwrap_err();
        assert!(why.contains("still blocked"), "{why}");
        // Once it returns, reads run again.
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while reader.busy.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reader.run(|_| Ok(3)), Ok(3));
    }

    #[test]
    fn the_threads_state_lasts_from_read_to_read() {
        let mut reader = BoundedReader::new(Duration::from_secs(5), || 0u32);
        for expected in 1..=3 {
            let count = reader.run(|n: &mut u32| {
                *n += 1;
                Ok(*n)
            });
            assert_eq!(count, Ok(expected));
        }
    }
}
