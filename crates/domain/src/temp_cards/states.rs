//! The states of a temporary card.

use crate::card::CardState;

pub const REQUESTED: CardState = CardState::new("requested");
pub const ABORTED: CardState = CardState::new("aborted");
pub const FAILED: CardState = CardState::new("failed");
pub const UNASSIGNED: CardState = CardState::new("unassigned");
pub const ASSIGNED: CardState = CardState::new("assigned");
pub const EXPIRED: CardState = CardState::new("expired");
pub const LOCKED: CardState = CardState::new("locked");

/// Every state, in the order lists show them.
pub const ALL: [CardState; 7] = [
    REQUESTED, ABORTED, FAILED, UNASSIGNED, ASSIGNED, EXPIRED, LOCKED,
];
