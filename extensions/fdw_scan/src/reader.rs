//! Reading a remote answer on a thread of its own while the backend turns what already arrived
//! into rows: the answer is fetched and parsed on one core while Postgres works on another, and
//! the backend's wait answers query cancellation (statement_timeout, pg_cancel_backend) instead
//! of sitting in a blocking read until the remote's timeout.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Items handed over at most this far ahead of the rows.
const AHEAD: usize = 16;

/// Why the reader thread gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderFailed(pub String);

impl std::fmt::Display for ReaderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the thread reading the answer {}", self.0)
    }
}

impl std::error::Error for ReaderFailed {}

/// The backend's end: items as the reader thread sends them, then its outcome.
pub struct Reader<T, E> {
    receiver: Option<Receiver<Result<T, E>>>,
    /// Cleared when the backend no longer wants the answer; the thread checks it between reads.
    wanted: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static, E: From<ReaderFailed> + Send + 'static> Reader<T, E> {
    /// Runs `read` on a thread with every signal blocked there (Postgres's handlers run only on
    /// the backend's thread). `read` hands each item to its first callback, which says whether to
    /// go on (no once the backend stopped listening), and asks the second between reads whether
    /// the answer is still wanted; it must not call into Postgres.
    pub fn start(
        read: impl FnOnce(&mut dyn FnMut(T) -> bool, &dyn Fn() -> bool) -> Result<(), E> + Send + 'static,
    ) -> Result<Self, E> {
        let (sender, receiver) = sync_channel::<Result<T, E>>(AHEAD);
        let wanted = Arc::new(AtomicBool::new(true));
        let still_wanted = wanted.clone();
        let work = move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                read(&mut |item| sender.send(Ok(item)).is_ok(), &|| still_wanted.load(Ordering::Relaxed))
            }));
            let failure = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error,
                Err(_) => E::from(ReaderFailed("panicked".into())),
            };
            let _ = sender.send(Err(failure));
        };
        // The new thread takes the blocked mask as it starts; the backend's is restored at once.
        let spawned = unsafe {
            let (mut all, mut previous) = (std::mem::zeroed::<libc::sigset_t>(), std::mem::zeroed::<libc::sigset_t>());
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
            let spawned = std::thread::Builder::new().name("fdw reader".into()).spawn(work);
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
            spawned
        };
        let thread = spawned.map_err(|e| E::from(ReaderFailed(format!("cannot start: {e}"))))?;
        Ok(Reader { receiver: Some(receiver), wanted, thread: Some(thread) })
    }

    /// Tells the thread to stop and waits until it has ended, answering cancellation meanwhile:
    /// a rescan or the scan's end leaves no reader thread behind.
    pub fn stop(&mut self) {
        self.wanted.store(false, Ordering::Relaxed);
        // A thread blocked handing over an item fails its send and returns.
        self.receiver = None;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
                pgrx::check_for_interrupts!();
            }
            let _ = thread.join();
        }
    }

    /// The next item; `None` once the reader is done. Waits answering cancellation.
    pub fn receive(&mut self) -> Result<Option<T>, E> {
        let Some(receiver) = &self.receiver else { return Ok(None) };
        loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(item)) => return Ok(Some(item)),
                Ok(Err(error)) => {
                    self.receiver = None;
                    return Err(error);
                }
                Err(RecvTimeoutError::Timeout) => {
                    pgrx::check_for_interrupts!();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.receiver = None;
                    return Ok(None);
                }
            }
        }
    }
}

impl<T, E> Drop for Reader<T, E> {
    /// On an error the scan's memory goes without [`Reader::stop`]: the thread still stops at its
    /// next read (no waiting here, which may run while an error unwinds).
    fn drop(&mut self) {
        self.wanted.store(false, Ordering::Relaxed);
    }
}
