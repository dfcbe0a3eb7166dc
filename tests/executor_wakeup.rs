//! glommio's executor must never go to sleep while one of its own tasks is runnable. glommio 0.9.0 did: its
//! run loop asked `run_task_queues` whether anything ran, and that answered "no" both when every queue was
//! empty and when the preempt timer had already fired before the first task ran; the loop then parked, and
//! the task that had just been woken waited until some unrelated event woke the executor (forever at
//! start-up; up to the next timer once running). The engine's start-up hang ("lost wakeup") was this. The
//! fix is in the patched copy of the crate (`vendor/glommio`, see its README). These tests provoke the race
//! without the engine: a preempt timer of a microsecond fires between the I/O poll that arms it and the first
//! task, on almost every turn of the loop.

use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Runs `rounds` turns of a task that wakes itself through the executor (a yield), on an executor whose
/// preempt timer is 1 us, and returns whether it finished within `limit`.
fn runs_to_the_end(rounds: usize, limit: Duration) -> bool {
    let (done_tx, done_rx) = mpsc::channel();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(Duration::from_micros(1))
        .io_memory(512 << 10)
        .spawn(move || async move {
            for _ in 0..rounds {
                // A task woken and queued, then the loop asks whether to park.
                glommio::spawn_local(async {}).await;
                futures::future::ready(()).await;
                glommio::executor().yield_now().await;
            }
            let _ = done_tx.send(());
        })
        .expect("an executor (RLIMIT_MEMLOCK must cover 512 KiB)");
    let finished = done_rx.recv_timeout(limit).is_ok();
    if finished {
        handle.join().expect("the executor ends");
    } else {
        // The executor thread sleeps for good: leave it; the process ends with the test binary.
        std::mem::forget(handle);
    }
    finished
}

#[test]
fn an_executor_with_runnable_tasks_never_parks() {
    for round in 0..20 {
        assert!(
            runs_to_the_end(2_000, Duration::from_secs(20)),
            "round {round}: the executor went to sleep with a runnable task"
        );
    }
}
