//! Work that continues after the visitor has their response (`ctx.waitUntil` on Workers).

use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;

/// A unit of background work. Not `Send`: the Workers runtime is single-threaded.
pub type Task = LocalBoxFuture<'static, ()>;

/// Somewhere to hand background work to.
///
/// Tasks must handle their own errors: nobody awaits their result.
pub trait Background {
    /// Runs `task` after (or while) the response is sent.
    fn spawn(&self, task: Task);
}

/// A [`Background`] that queues tasks until [`TaskQueue::run_all`] drives them.
///
/// Tests use it to decide exactly when background regeneration happens.
#[derive(Default)]
pub struct TaskQueue {
    tasks: RefCell<Vec<Task>>,
}

impl TaskQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tasks waiting.
    pub fn len(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Whether no task is waiting.
    pub fn is_empty(&self) -> bool {
        self.tasks.borrow().is_empty()
    }

    /// Runs queued tasks one after the other until none is left (tasks may queue more).
    pub async fn run_all(&self) {
        loop {
            let next = {
                let mut tasks = self.tasks.borrow_mut();
                if tasks.is_empty() {
                    None
                } else {
                    Some(tasks.remove(0))
                }
            };
            match next {
                Some(task) => task.await,
                None => break,
            }
        }
    }

    /// Takes every queued task without running it (to run them concurrently, for instance).
    pub fn take_all(&self) -> Vec<Task> {
        std::mem::take(&mut *self.tasks.borrow_mut())
    }
}

impl Background for TaskQueue {
    fn spawn(&self, task: Task) {
        self.tasks.borrow_mut().push(task);
    }
}
