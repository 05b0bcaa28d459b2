//! Previews of templates and cards. A preview is rendered once for what it shows (the filled
//! layout and the width) and kept in a cache of bounded size, so a template's preview costs one
//! render however often it is asked for, and people who ask while it renders wait for that
//! render instead of starting their own. An operator has at most a few renders under way at
//! once. Previews render in the renderer's preview lane, so production never waits behind them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cardwright_cardsdk::lanes::describe;
use cardwright_cardsdk::layout::Renderer;
use cardwright_cardsdk::limits;
use cardwright_cardsdk::{CardArtwork, Lane, LayoutError, Side};
use cardwright_domain::{Operator, OperatorId};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::ProcessError;

/// What previews may take.
#[derive(Debug, Clone, Copy)]
pub struct PreviewSettings {
    /// Renders one operator may have under way at once: rendering, waiting for room in the
    /// preview lane, or waiting for someone else's render of the same preview. Answers from
    /// the cache do not count.
    pub per_operator: usize,
    /// The memory the cached pictures (and refusals) may take, in bytes.
    pub cache_bytes: usize,
    /// How long a card may take to render; an uploaded layout over it is refused.
    pub card_budget: Duration,
}

impl Default for PreviewSettings {
    fn default() -> Self {
        Self {
            per_operator: 4,
            cache_bytes: 32 * 1024 * 1024,
            card_budget: limits::TIME_BUDGET,
        }
    }
}

/// At most this many previews are cached, however small.
const CACHE_ENTRIES: usize = 4_096;
/// What a cached preview costs beyond its bytes (its key, its place in the table).
const ENTRY_OVERHEAD: usize = 128;
/// What an operator over their limit is told to wait: by then a render of theirs has ended.
const RETRY_AFTER: Duration = limits::TIME_BUDGET;

/// A rendered preview, or why it cannot be rendered.
type Outcome = Result<Arc<Vec<u8>>, LayoutError>;
/// SHA-256 of the width and the filled layout.
type Key = [u8; 32];

/// The preview cache and who is rendering what.
#[derive(Debug)]
pub struct Previews {
    settings: PreviewSettings,
    cache: Mutex<Cache>,
    under_way: Mutex<HashMap<OperatorId, usize>>,
    renders: AtomicU64,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    /// Bytes the ready entries take.
    bytes: usize,
    /// Counts uses, so the least recently used entry can be found.
    clock: u64,
}

#[derive(Debug)]
enum Entry {
    Ready {
        outcome: Outcome,
        bytes: usize,
        used: u64,
    },
    /// A render under way; its outcome comes through the channel.
    Rendering(watch::Receiver<Option<Outcome>>),
}

/// What asking the cache found.
enum Found {
    Ready(Outcome),
    Rendering(watch::Receiver<Option<Outcome>>),
    /// Nothing: the caller renders and tells the others through the sender.
    Nothing(
        watch::Sender<Option<Outcome>>,
        watch::Receiver<Option<Outcome>>,
    ),
}

/// One of an operator's renders under way; ends when dropped.
struct Turn {
    previews: Arc<Previews>,
    operator: OperatorId,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut under_way = self
            .previews
            .under_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = under_way.get_mut(&self.operator) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                under_way.remove(&self.operator);
            }
        }
    }
}

impl Default for Previews {
    fn default() -> Self {
        Self::new(PreviewSettings::default())
    }
}

impl Previews {
    pub fn new(settings: PreviewSettings) -> Self {
        Self {
            settings,
            cache: Mutex::new(Cache::default()),
            under_way: Mutex::new(HashMap::new()),
            renders: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> PreviewSettings {
        self.settings
    }

    /// Preview renders started so far (answers from the cache and waits for another's render
    /// start none).
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::SeqCst)
    }

    /// The bytes the cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache().bytes
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A PNG of one side of `artwork`, `width` pixels wide: from the cache, from a render of
    /// the same preview under way, or rendered now.
    pub async fn png(
        self: &Arc<Self>,
        operator: &Operator,
        artwork: CardArtwork,
        side: Side,
        width: u32,
    ) -> Result<Vec<u8>, ProcessError> {
        // Filling reads the layout and hashing reads a photo: work for a blocking thread.
        let (filled, key) = tokio::task::spawn_blocking(move || {
            let filled = artwork.svg(side)?;
            let key = key(width, &filled);
            Ok::<_, LayoutError>((filled, key))
        })
        .await
        .map_err(|e| ProcessError::failed("preparing the preview stopped", e))?
        .map_err(refusal)?;
        if let Some(outcome) = self.cached(&key) {
            return answer(outcome);
        }
        let turn = self.turn(operator)?;
        let (mut outcome, _turn) = match self.find(key) {
            Found::Ready(outcome) => return answer(outcome),
            Found::Rendering(outcome) => (outcome, Some(turn)),
            Found::Nothing(sender, outcome) => {
                self.render(key, filled, width, turn, sender);
                (outcome, None)
            }
        };
        let outcome = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|e| ProcessError::failed("the preview's render stopped", e))?
            .clone()
            .ok_or_else(|| ProcessError::Internal("a preview's render gave nothing".into()))?;
        answer(outcome)
    }

    /// Refuses an uploaded layout whose card takes longer to render than a card may, saying
    /// how long it took: the card's PDF and a preview of each side, `width` pixels wide.
    pub async fn check_render_time(
        self: &Arc<Self>,
        operator: &Operator,
        artwork: CardArtwork,
        width: u32,
    ) -> Result<(), ProcessError> {
        let _turn = self.turn(operator)?;
        let budget = self.settings.card_budget;
        let took = tokio::task::spawn_blocking(move || artwork.measure(budget, width))
            .await
            .map_err(|e| ProcessError::failed("measuring the layout stopped", e))?;
        let over = |took: String| {
            ProcessError::Unprocessable(format!(
                "rendering this layout took {took}; a card may take at most {}",
                describe(budget)
            ))
        };
        match took {
            Ok(took) if took <= budget => Ok(()),
            Ok(took) => Err(over(describe(took))),
            Err(LayoutError::TooSlow { budget: longest }) => {
                Err(over(format!("more than {}", describe(longest))))
            }
            Err(LayoutError::Busy) => Err(busy()),
            Err(other) => Err(ProcessError::Unprocessable(other.to_string())),
        }
    }

    /// The cached outcome for `key`, if there is one.
    fn cached(&self, key: &Key) -> Option<Outcome> {
        let mut cache = self.cache();
        cache.clock += 1;
        let now = cache.clock;
        match cache.entries.get_mut(key) {
            Some(Entry::Ready { outcome, used, .. }) => {
                *used = now;
                Some(outcome.clone())
            }
            _ => None,
        }
    }

    /// The cached outcome, the render under way, or the place for a new render.
    fn find(&self, key: Key) -> Found {
        let mut cache = self.cache();
        if let Some(outcome) = cache.entries.get(&key).map(|entry| match entry {
            Entry::Ready { outcome, .. } => Found::Ready(outcome.clone()),
            Entry::Rendering(outcome) => Found::Rendering(outcome.clone()),
        }) {
            return outcome;
        }
        let (sender, outcome) = watch::channel(None);
        cache.entries.insert(key, Entry::Rendering(outcome.clone()));
        Found::Nothing(sender, outcome)
    }

    /// Takes one of the operator's turns, or refuses when they have all of theirs.
    fn turn(self: &Arc<Self>, operator: &Operator) -> Result<Turn, ProcessError> {
        let most = self.settings.per_operator;
        let mut under_way = self
            .under_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = under_way.entry(operator.id).or_insert(0);
        if *count >= most {
            return Err(ProcessError::Limited {
                message: format!(
                    "you have {most} previews being rendered, as many as one operator may have at once; try again in {}",
                    describe(RETRY_AFTER)
                ),
                retry_after: RETRY_AFTER,
            });
        }
        *count += 1;
        Ok(Turn {
            previews: Arc::clone(self),
            operator: operator.id,
        })
    }

    /// Renders a preview in a task of its own, so that it finishes (and is cached) even when
    /// everyone who asked for it has gone; the operator's turn lasts as long as the render.
    fn render(
        self: &Arc<Self>,
        key: Key,
        filled: String,
        width: u32,
        turn: Turn,
        sender: watch::Sender<Option<Outcome>>,
    ) {
        self.renders.fetch_add(1, Ordering::SeqCst);
        let previews = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = tokio::task::spawn_blocking(move || {
                Renderer::shared()
                    .png_in(Lane::Preview, &filled, width)
                    .map(Arc::new)
            })
            .await
            .unwrap_or_else(|e| Err(LayoutError::Render(format!("the render stopped: {e}"))));
            // The turn ends before anyone hears the outcome, so an operator who asks again
            // at once finds it free.
            drop(turn);
            previews.settle(key, &outcome);
            let _ = sender.send(Some(outcome));
        });
    }

    /// Keeps an outcome that the same preview would have again (a picture, or a refusal by
    /// the layout's limits), forgetting the least recently used ones beyond the cache's size;
    /// a render that ran out of time or found no room is not kept.
    fn settle(&self, key: Key, outcome: &Outcome) {
        let mut cache = self.cache();
        cache.entries.remove(&key);
        let bytes = ENTRY_OVERHEAD
            + match outcome {
                Ok(png) => png.len(),
                Err(e) => e.to_string().len(),
            };
        let keep = match outcome {
            Ok(_) => true,
            Err(e) => matches!(
                e,
                LayoutError::TooLarge { .. }
                    | LayoutError::Malformed { .. }
                    | LayoutError::Forbidden { .. }
                    | LayoutError::Budget(_)
            ),
        };
        if !keep || bytes > self.settings.cache_bytes {
            return;
        }
        cache.clock += 1;
        let used = cache.clock;
        cache.entries.insert(
            key,
            Entry::Ready {
                outcome: outcome.clone(),
                bytes,
                used,
            },
        );
        cache.bytes += bytes;
        while cache.bytes > self.settings.cache_bytes || cache.entries.len() > CACHE_ENTRIES {
            let oldest = cache
                .entries
                .iter()
                .filter_map(|(key, entry)| match entry {
                    Entry::Ready { used, bytes, .. } => Some((*used, *key, *bytes)),
                    Entry::Rendering(_) => None,
                })
                .min();
            let Some((_, key, bytes)) = oldest else {
                break;
            };
            cache.entries.remove(&key);
            cache.bytes -= bytes;
        }
    }
}

fn key(width: u32, filled: &str) -> Key {
    let mut hash = Sha256::new();
    hash.update(b"png");
    hash.update(width.to_le_bytes());
    hash.update(filled.as_bytes());
    hash.finalize().into()
}

fn answer(outcome: Outcome) -> Result<Vec<u8>, ProcessError> {
    outcome.map(|png| png.as_ref().clone()).map_err(refusal)
}

fn busy() -> ProcessError {
    ProcessError::Busy {
        message: LayoutError::Busy.to_string(),
        retry_after: limits::PREVIEW_WAIT,
    }
}

/// Why a preview cannot be had, as the operator is told.
fn refusal(e: LayoutError) -> ProcessError {
    match e {
        // A layout over the renderer's limits is the administrator's to fix, not a fault.
        LayoutError::Budget(_)
        | LayoutError::TooSlow { .. }
        | LayoutError::Forbidden { .. }
        | LayoutError::TooLarge { .. } => {
            ProcessError::Unprocessable(format!("the card's layout cannot be previewed: {e}"))
        }
        LayoutError::Busy => busy(),
        other => ProcessError::Internal(format!("rendering the preview failed: {other}")),
    }
}
