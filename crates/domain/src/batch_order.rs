//! Batch orders, which produce the cards of any area in one go ("Issue multiple temporary
//! cards"): their states, their items and which wizard button is allowed when.

use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;
use crate::ids::{BatchOrderId, CardId, OperatorId};
use crate::Timestamp;

/// The most cards one batch order takes.
pub const MAX_ORDER_CARDS: usize = 1000;

/// The state of a batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Cards chosen, nothing produced.
    Open,
    /// Items are queued or in a printer.
    Producing,
    /// Every item is produced or failed; the operator completes or repeats.
    Produced,
    Completed,
    Cancelled,
}

/// The wizard's buttons, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    Next,
    Repeat,
    Complete,
    Cancel,
}

impl OrderAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderAction::Next => "Next",
            OrderAction::Repeat => "Repeat production",
            OrderAction::Complete => "Complete order",
            OrderAction::Cancel => "Cancel",
        }
    }

    /// The order states the button works in.
    pub fn allowed_in(self) -> &'static [OrderState] {
        use OrderState::{Open, Produced, Producing};
        match self {
            OrderAction::Next => &[Open],
            OrderAction::Repeat => &[Producing, Produced],
            OrderAction::Complete => &[Produced],
            OrderAction::Cancel => &[Open, Producing, Produced],
        }
    }

    /// Refuses the button when the order is in another state.
    pub fn check(self, state: OrderState) -> Result<(), DomainError> {
        if self.allowed_in().contains(&state) {
            Ok(())
        } else {
            Err(DomainError::Conflict(format!(
                "{} is not possible on a batch order that is {state}; it needs {}",
                self.as_str(),
                self.allowed_in()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }
}

impl OrderState {
    pub const ALL: [OrderState; 5] = [
        OrderState::Open,
        OrderState::Producing,
        OrderState::Produced,
        OrderState::Completed,
        OrderState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Open => "open",
            OrderState::Producing => "producing",
            OrderState::Produced => "produced",
            OrderState::Completed => "completed",
            OrderState::Cancelled => "cancelled",
        }
    }

    /// A closed order holds no cards any more.
    pub fn is_closed(self) -> bool {
        matches!(self, OrderState::Completed | OrderState::Cancelled)
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderState {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid("state", format!("'{s}' is not a batch order state"))
            })
    }
}

/// Where one card of an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemStatus {
    Selected,
    Queued,
    Producing,
    Produced,
    Failed,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 5] = [
        ItemStatus::Selected,
        ItemStatus::Queued,
        ItemStatus::Producing,
        ItemStatus::Produced,
        ItemStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Selected => "selected",
            ItemStatus::Queued => "queued",
            ItemStatus::Producing => "producing",
            ItemStatus::Produced => "produced",
            ItemStatus::Failed => "failed",
        }
    }

    /// Repeat production takes failed items and produced ones the operator rejects.
    pub fn can_repeat(self) -> bool {
        matches!(self, ItemStatus::Produced | ItemStatus::Failed)
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| DomainError::invalid("status", format!("'{s}' is not an item status")))
    }
}

/// A batch order without its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOrder {
    pub id: BatchOrderId,
    pub state: OrderState,
    pub operator: OperatorId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One card of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub card: CardId,
    pub position: u32,
    pub status: ItemStatus,
    pub attempts: u32,
    pub error: Option<String>,
    pub station: Option<String>,
}

/// Checks the cards chosen for a new order: 1 to [`MAX_ORDER_CARDS`], each once.
pub fn check_selection(cards: &[CardId]) -> Result<(), DomainError> {
    if cards.is_empty() {
        return Err(DomainError::invalid("cards", "choose at least one card"));
    }
    if cards.len() > MAX_ORDER_CARDS {
        return Err(DomainError::invalid(
            "cards",
            format!(
                "a batch order takes at most {MAX_ORDER_CARDS} cards, got {}",
                cards.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = cards.iter().find(|id| !seen.insert(**id)) {
        return Err(DomainError::invalid(
            "cards",
            format!("card {twice} is chosen twice"),
        ));
    }
    Ok(())
}

/// The order state once no item is waiting or in a printer any more.
pub fn settle(state: OrderState, unfinished_items: u64) -> OrderState {
    if state == OrderState::Producing && unfinished_items == 0 {
        OrderState::Produced
    } else {
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_follow_the_wizard() {
        assert!(OrderAction::Next.check(OrderState::Open).is_ok());
        assert!(OrderAction::Next.check(OrderState::Producing).is_err());
        assert!(OrderAction::Complete.check(OrderState::Producing).is_err());
        assert!(OrderAction::Complete.check(OrderState::Produced).is_ok());
        assert!(OrderAction::Cancel.check(OrderState::Completed).is_err());
        assert!(OrderAction::Repeat.check(OrderState::Open).is_err());
    }

    #[test]
    fn selections_are_checked() {
        let a = CardId::new(1, [1; 10]);
        assert!(check_selection(&[]).is_err());
        assert!(check_selection(&[a, a]).is_err());
        assert!(check_selection(&[a]).is_ok());
    }

    #[test]
    fn producing_settles_when_nothing_is_left() {
        assert_eq!(settle(OrderState::Producing, 0), OrderState::Produced);
        assert_eq!(settle(OrderState::Producing, 2), OrderState::Producing);
        assert_eq!(settle(OrderState::Cancelled, 0), OrderState::Cancelled);
    }
}
