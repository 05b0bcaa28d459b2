//! The temporary card area: the cards handed to employees who forgot their badge, their states,
//! the catalog of their processes, the batch orders that produce them and the options their
//! processes run with.
//!
//! A second card area (permanent cards, PIN unblock) is a sibling module with its own states and
//! catalog; persons, templates, operators and ids are shared at the crate's root.

pub mod batch_order;
pub mod card;
pub mod catalog;
pub mod events;
pub mod options;
pub mod reason;

pub use batch_order::{BatchOrder, ItemStatus, OrderAction, OrderItem, OrderState};
pub use card::{Amount, Card, CardState, Serial};
pub use catalog::{
    card_processes_allowed, Input, ProcessDef, ProcessName, ProcessScope, CATALOG, OPTION_SCRIPT,
};
pub use events::{EventType, Language, MailKind};
pub use options::TempCardOptions;
pub use reason::{Reason, ReasonKind};
