//! Time limits for file work. A read of a hung filesystem (a dead NFS server, a FUSE daemon
//! that never answers) blocks its thread in the kernel, where nothing can interrupt it. So the
//! work runs on a helper thread and the caller waits at most the limit: on time, it gets the
//! answer; late, it gets `Elapsed` and goes on, and only the helper stays stuck. Helpers are
//! kept for reuse (a check run makes thousands of calls a second) and more are started when
//! all are busy, up to a cap, so a few stuck ones never stop the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
    /// Every helper is stuck and no more may be started: the work was never started.
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

/// How long a job may wait to be taken before another helper is started for it: long enough
/// that a helper finishing its job (and about to take the next) is not duplicated, short enough
/// that a stuck helper delays nobody noticeably.
const START_WAIT: Duration = Duration::from_millis(2);

impl Bounded {
    /// Runs `work` on a helper and waits at most `limit` for its result. Work that has not
    /// started when the caller gives up never starts.
    pub fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Late> {
        let deadline = Instant::now() + limit;
        let (tx, rx) = mpsc::sync_channel(1);
        // 0: queued, 1: started, 2: given up by the caller before it started.
        let phase = Arc::new(AtomicU8::new(0));
        let job_phase = phase.clone();
        let job: Job = Box::new(move || {
            if job_phase.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                let _ = tx.send(work());
            }
        });
        {
            let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.helpers == 0 {
                self.spawn(&mut st);
            }
            st.jobs.push_back(job);
        }
        self.inner.wake.notify_one();
        let mut grown = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if grown { left } else { left.min(START_WAIT) };
            match rx.recv_timeout(wait) {
                Ok(v) => return Ok(v),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Late::Panicked),
                Err(mpsc::RecvTimeoutError::Timeout) if left > wait => {
                    // Not taken yet: every helper is busy, or stuck. Start one more, once.
                    if !grown && phase.load(Ordering::Acquire) == 0 {
                        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
                        self.spawn(&mut st);
                        drop(st);
                        self.inner.wake.notify_one();
                    }
                    grown = true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let never_started = phase.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire).is_ok();
                    let at_cap = self.inner.state.lock().unwrap_or_else(|p| p.into_inner()).helpers >= MAX_HELPERS;
                    return Err(if never_started && at_cap { Late::Saturated } else { Late::Elapsed });
                }
            }
        }
    }

    /// Starts one more helper, unless there are as many as allowed.
    fn spawn(&self, st: &mut State) {
        if st.helpers >= MAX_HELPERS {
            return;
        }
        let inner = self.inner.clone();
        if std::thread::Builder::new().name("posture-file-io".into()).spawn(move || helper(inner)).is_ok() {
            st.helpers += 1;
        }
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
