//! The temporary card area: the cards handed to employees who forgot their badge. It supplies
//! its states, the catalog of its processes, its option script and its path ([`AREA`]); the
//! options its processes run with are in `options`.
//!
//! A second area (permanent cards) is a sibling module with an `AREA` of its own, listed in
//! [`crate::area::AREAS`]; cards, batch orders, reasons, events, persons, templates, operators and
//! ids are shared at the crate's root.

pub mod catalog;
pub mod options;
pub mod processes;
pub mod states;

use crate::area::Area;

pub use catalog::{card_processes_allowed, CATALOG, OPTION_SCRIPT};
pub use options::TempCardOptions;

/// The temporary card area.
pub static AREA: Area = Area {
    kind: "temporary",
    title: "Temporary cards",
    route_prefix: "temporary-cards",
    option_script: OPTION_SCRIPT,
    states: &states::ALL,
    final_states: &[states::ABORTED, states::LOCKED],
    production_failed: states::FAILED,
    catalog: &CATALOG,
};

// What every area shares, under the names the temporary card area had for them.
pub use crate::batch_order::{BatchOrder, ItemStatus, OrderAction, OrderItem, OrderState};
pub use crate::card::{Amount, Card, CardState, Serial};
pub use crate::catalog::{Input, ProcessDef, ProcessName, ProcessScope};
pub use crate::events::{EventType, Language, MailKind};
pub use crate::reason::{Reason, ReasonKind};
