//! Time limits for file work. A read of a hung filesystem (a dead NFS server, a FUSE daemon
//! that never answers) blocks its thread in the kernel, where nothing can interrupt it. So the
//! work runs on a helper thread and the caller waits at most the limit: on time, it gets the
//! answer; late, it gets `Elapsed` and goes on, and only the helper stays stuck. Helpers are
//! kept for reuse (a check run makes thousands of calls a second) and more are started when
//! all are busy, up to a cap, so a few stuck ones never stop the rest.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// Most helper threads at once (busy, idle or stuck).
const MAX_HELPERS: usize = 256;
/// An idle helper ends after this long.
const IDLE: Duration = Duration::from_secs(30);

/// The work did not finish within the limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Late {
    /// It is still running (and may yet finish).
    Elapsed,
    /// Every helper is busy or stuck: the work was not started.
    Saturated,
    /// It panicked.
    Panicked,
}

/// Helper threads shared by the calls of one connector.
#[derive(Default)]
pub struct Bounded {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    helpers: usize,
}

impl Bounded {
    /// Runs `work` on a helper and waits at most `limit` for its result.
    pub fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Late> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.idle <= st.jobs.len() {
                if st.helpers >= MAX_HELPERS {
                    return Err(Late::Saturated);
                }
                st.helpers += 1;
                let inner = self.inner.clone();
                let spawned = std::thread::Builder::new().name("posture-file-io".into()).spawn(move || helper(inner));
                if spawned.is_err() {
                    st.helpers -= 1;
                    return Err(Late::Saturated);
                }
            }
            st.jobs.push_back(Box::new(move || {
                let _ = tx.send(work());
            }));
        }
        self.inner.wake.notify_one();
        rx.recv_timeout(limit).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => Late::Elapsed,
            mpsc::RecvTimeoutError::Disconnected => Late::Panicked,
        })
    }
}

fn helper(inner: Arc<Inner>) {
    let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            // A panicking job drops its sender: its caller sees `Panicked`; the helper lives on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            continue;
        }
        st.idle += 1;
        let (next, timeout) = inner.wake.wait_timeout(st, IDLE).unwrap_or_else(|p| p.into_inner());
        st = next;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            st.helpers -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_time_and_gives_up_on_stuck_work() {
        let b = Bounded::default();
        assert_eq!(b.run(Duration::from_secs(5), || 7), Ok(7));
        let (release, stuck) = mpsc::channel::<()>();
        let r = b.run(Duration::from_millis(50), move || stuck.recv().ok());
        assert_eq!(r, Err(Late::Elapsed));
        // The stuck helper does not stop the next call.
        assert_eq!(b.run(Duration::from_secs(5), || "next"), Ok("next"));
        release.send(()).unwrap();
        assert_eq!(b.run(Duration::from_secs(5), || -> i32 { panic!("boom") }), Err(Late::Panicked));
        assert_eq!(b.run(Duration::from_secs(5), || 1), Ok(1));
    }

    #[test]
    fn many_callers_at_once() {
        let b = Arc::new(Bounded::default());
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let b = b.clone();
                std::thread::spawn(move || b.run(Duration::from_secs(10), move || i * 2))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), Ok(i * 2));
        }
    }
}
