//! Where and how long renders run. Renders run in one of two lanes, each with capacity of its
//! own: production (a card's PDF, its PIN letter, the spooled picture) and previews. Previews
//! can never take production's capacity, so a card is never refused or held up because people
//! are looking at previews. Each render runs on a thread of its own under a time budget
//! ([`crate::limits::TIME_BUDGET`]) that it checks between its steps, and stops there once the
//! budget is spent.

use std::sync::mpsc;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::layout::LayoutError;
use crate::limits::PREVIEW_WAIT;

/// How long past its budget the caller of a render waits for it to reach its next step and
/// stop. The structural limits keep every step far shorter.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What a render is for. Each lane has render capacity of its own: previews, however many
/// people ask for them, never take the capacity of production, so a card is never refused or
/// held up behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// A card's PDF, its PIN letter and the picture spooled with it. Waits for room as long as
    /// it takes: only other production renders take that room, and stations render one card
    /// at a time.
    Production,
    /// Previews of templates and cards, and measuring an uploaded layout. Waits at most
    /// [`PREVIEW_WAIT`] for room, then is refused as busy.
    Preview,
}

impl Lane {
    /// Renders of this lane that run at once: one per core, two to eight for production and
    /// two to four for previews. Each render's pixels are held to [`crate::limits::MEMORY_BUDGET_BYTES`] and
    /// its drawing to [`crate::limits::MAX_PATH_SEGMENTS`], so the lanes together bound the memory rendering
    /// may take.
    pub fn capacity(self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        match self {
            Lane::Production => cores.clamp(2, 8),
            Lane::Preview => cores.clamp(2, 4),
        }
    }

    /// Renders of this lane running now, counting one that outran its budget until it stopped.
    pub fn running(self) -> usize {
        self.slots().in_use()
    }

    fn slots(self) -> &'static Slots {
        static PRODUCTION: std::sync::OnceLock<Slots> = std::sync::OnceLock::new();
        static PREVIEW: std::sync::OnceLock<Slots> = std::sync::OnceLock::new();
        match self {
            Lane::Production => PRODUCTION.get_or_init(|| Slots::new(self.capacity())),
            Lane::Preview => PREVIEW.get_or_init(|| Slots::new(self.capacity())),
        }
    }

    /// How long a render waits for room; `None`: as long as it takes.
    fn wait(self) -> Option<Duration> {
        match self {
            Lane::Production => None,
            Lane::Preview => Some(PREVIEW_WAIT),
        }
    }
}

/// Room for a number of renders at once.
#[derive(Debug)]
struct Slots {
    capacity: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn in_use(&self) -> usize {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes room for one render, waiting at most `wait` (`None`: without end) for it.
    fn take(&'static self, wait: Option<Duration>) -> Option<Slot> {
        let until = wait.map(|wait| Instant::now() + wait);
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= self.capacity {
            used = match until {
                None => self
                    .freed
                    .wait(used)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.checked_duration_since(Instant::now())?;
                    self.freed
                        .wait_timeout(used, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        *used += 1;
        Some(Slot(self))
    }
}

/// One render's room; given back when the render's thread ends, however it ends.
struct Slot(&'static Slots);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// When a render must stop. The renderer checks it between its steps (parsing, drawing each
/// element, converting each page), and the structural limits keep every step short, so a render
/// over its budget stops within moments of it instead of running on after its answer.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// Refuses to go on once the budget is spent.
    pub fn check(&self) -> Result<(), LayoutError> {
        if Instant::now() >= self.at {
            Err(LayoutError::TooSlow {
                budget: self.budget,
            })
        } else {
            Ok(())
        }
    }
}

/// A duration as a person reads it: "7.2 s", "5 s", "40 ms".
pub fn describe(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        return format!("{} ms", duration.as_millis());
    }
    let tenths = (duration.as_millis() + 50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

/// Runs one render in `lane` on a thread of its own, with `budget` to do it in. The render
/// checks its [`Deadline`] between its steps and stops there once the budget is spent; its
/// caller waits a moment longer for that and answers in any case. The render's room in its lane
/// is given back when its thread ends, so a render that outran its budget counts against the
/// lane until it has stopped. The thread is not a runtime's blocking task, so it never holds up
/// a shutdown.
pub fn render_in<T: Send + 'static>(
    lane: Lane,
    budget: Duration,
    work: impl FnOnce(&Deadline) -> Result<T, LayoutError> + Send + 'static,
) -> Result<T, LayoutError> {
    run(lane.slots(), lane.wait(), budget, work)
}

fn run<T: Send + 'static>(
    slots: &'static Slots,
    wait: Option<Duration>,
    budget: Duration,
    work: impl FnOnce(&Deadline) -> Result<T, LayoutError> + Send + 'static,
) -> Result<T, LayoutError> {
    let slot = slots.take(wait).ok_or(LayoutError::Busy)?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("cardwright-render".into())
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            let result = work(&Deadline::after(budget));
            // The room is free before the answer is sent, so whoever reads the answer finds it.
            drop(slot);
            let _ = tx.send(result);
        })
        .map_err(|e| LayoutError::Render(format!("cannot start a render thread: {e}")))?;
    match rx.recv_timeout(budget + STOP_GRACE) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(LayoutError::TooSlow { budget }),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(LayoutError::Render("the render thread stopped".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::TIME_BUDGET;

    fn slots(capacity: usize) -> &'static Slots {
        Box::leak(Box::new(Slots::new(capacity)))
    }

    #[test]
    fn a_render_that_never_checks_its_deadline_is_still_answered() {
        let (release, wait) = mpsc::channel::<()>();
        let started = Instant::now();
        let result = run(slots(1), None, Duration::from_millis(50), move |_| {
            let _ = wait.recv();
            Ok(())
        });
        assert!(
            matches!(result, Err(LayoutError::TooSlow { .. })),
            "{result:?}"
        );
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("longer than 50 ms"));
        assert!(started.elapsed() < Duration::from_secs(30));
        release.send(()).unwrap();
    }

    #[test]
    fn a_render_over_its_budget_stops_at_its_next_step_and_gives_its_room_back() {
        let room = slots(1);
        let steps = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = steps.clone();
        let result: Result<(), _> =
            run(
                room,
                None,
                Duration::from_millis(30),
                move |deadline| loop {
                    deadline.check()?;
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(1));
                },
            );
        assert!(
            matches!(result, Err(LayoutError::TooSlow { .. })),
            "{result:?}"
        );
        assert_eq!(
            room.in_use(),
            0,
            "the render has ended by the time it is answered"
        );
        let after = steps.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            steps.load(std::sync::atomic::Ordering::SeqCst),
            after,
            "no step runs after the answer"
        );
    }

    #[test]
    fn a_full_lane_refuses_after_its_wait_and_holds_only_its_own_room() {
        let room = slots(1);
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            run(room, None, Duration::from_mins(1), move |_| {
                let _ = started_tx.send(());
                let _ = wait.recv();
                Ok(())
            })
        });
        started.recv_timeout(Duration::from_secs(30)).unwrap();
        let refused = run(room, Some(Duration::from_millis(20)), TIME_BUDGET, |_| {
            Ok(())
        });
        assert!(matches!(refused, Err(LayoutError::Busy)), "{refused:?}");
        // Another lane's room is untouched by this one being full.
        assert_eq!(run(slots(1), None, TIME_BUDGET, |_| Ok(7)).unwrap(), 7);
        release.send(()).unwrap();
        holder.join().unwrap().unwrap();
        assert_eq!(
            run(room, Some(Duration::from_secs(30)), TIME_BUDGET, |_| Ok(8)).unwrap(),
            8
        );
    }

    #[test]
    fn a_runtime_shuts_down_while_a_render_is_still_running() {
        let (release, wait) = mpsc::channel::<()>();
        let (finished_tx, finished) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.spawn(async move {
            let _ = tokio::task::spawn_blocking(move || {
                run(slots(1), None, Duration::from_millis(50), move |_| {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                    let _ = finished_tx.send(());
                    Ok(())
                })
            })
            .await;
        });
        started
            .recv_timeout(Duration::from_secs(30))
            .expect("the render starts");
        // Dropping a runtime waits for its blocking tasks; the caller's wait ends with the
        // budget and its grace, so this returns while the render itself is still blocked.
        drop(runtime);
        assert!(
            finished.try_recv().is_err(),
            "the render must still be running after the shutdown"
        );
        release.send(()).unwrap();
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the render finishes once released");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(describe(Duration::from_millis(7_240)), "7.2 s");
        assert_eq!(describe(TIME_BUDGET), "5 s");
        assert_eq!(describe(Duration::from_millis(40)), "40 ms");
    }
}
