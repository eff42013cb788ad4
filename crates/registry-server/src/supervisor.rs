//! Background tasks that cannot die silently.
//!
//! The writer, the health checker, its notes and the node heartbeat each run under
//! [`supervise`]: a panic is caught, logged with its message, and the task started again
//! after a back-off that grows while it keeps failing. While a task is down (and until a restart
//! has run for a while without failing) [`Tasks::down`] names it, and `/readyz` answers
//! 503, so a load balancer or an operator learns of it instead of finding checks that
//! quietly stopped.

use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The supervised tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    Writer,
    HealthChecker,
    HealthNotes,
    NodeHeartbeat,
}

impl Task {
    const ALL: [Task; 4] = [
        Task::Writer,
        Task::HealthChecker,
        Task::HealthNotes,
        Task::NodeHeartbeat,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Task::Writer => "writer",
            Task::HealthChecker => "health checker",
            Task::HealthNotes => "health notes",
            Task::NodeHeartbeat => "node heartbeat",
        }
    }
}

/// Which supervised tasks are down.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    down: [AtomicBool; 4],
}

impl Tasks {
    /// The tasks down now, by name; empty when all run.
    pub(crate) fn down(&self) -> Vec<&'static str> {
        Task::ALL
            .into_iter()
            .filter(|task| self.down[*task as usize].load(Ordering::Relaxed))
            .map(Task::name)
            .collect()
    }

    fn set_down(&self, task: Task, down: bool) {
        self.down[task as usize].store(down, Ordering::Relaxed);
    }
}

/// The first pause before a restart; doubled after each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a restarted task must run without failing to count as up again.
const PROBATION: Duration = Duration::from_secs(5);

/// Runs the future `start` makes until it returns, starting it again whenever it panics.
pub(crate) async fn supervise<F, Fut>(task: Task, tasks: Arc<Tasks>, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut restarted = false;
    loop {
        let run = AssertUnwindSafe(start()).catch_unwind();
        tokio::pin!(run);
        let outcome = if restarted {
            tokio::select! {
                outcome = &mut run => outcome,
                _ = tokio::time::sleep(PROBATION) => {
                    tracing::info!(task = task.name(), "restarted task is running again");
                    tasks.set_down(task, false);
                    backoff = FIRST_BACKOFF;
                    run.await
                }
            }
        } else {
            run.await
        };
        let Err(panic) = outcome else {
            tasks.set_down(task, false);
            return;
        };
        tasks.set_down(task, true);
        tracing::error!(
            task = task.name(),
            panic = panic_message(panic.as_ref()),
            "background task failed; restarting it in {:?}",
            backoff
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restarted = true;
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_reported_down_until_it_holds() {
        let tasks = Arc::new(Tasks::default());
        let starts = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut done_rx = Some(done_rx);
        let supervisor = tokio::spawn({
            let (tasks, starts) = (tasks.clone(), starts.clone());
            async move {
                supervise(Task::HealthChecker, tasks, move || {
                    let n = starts.fetch_add(1, Ordering::SeqCst);
                    let done = if n >= 2 { done_rx.take() } else { None };
                    async move {
                        if n < 2 {
                            panic!("timer overflow");
                        }
                        done.expect("the third start").await.ok();
                    }
                })
                .await
            }
        });
        // Two failures, then a run that holds.
        while starts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(tasks.down(), vec!["health checker"]);
        tokio::time::sleep(PROBATION + Duration::from_millis(10)).await;
        assert!(tasks.down().is_empty(), "up again after its probation");
        done_tx.send(()).unwrap();
        supervisor.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }
}
