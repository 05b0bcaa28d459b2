//! Process catalogs: the rows an area lists, one per process, with the states it needs, the state
//! it leaves, the role it requires and what it takes as input. The API, the UI, the command line
//! and the tests read an area's catalog; the engine runs a card's process from its row.

use std::fmt;
use std::str::FromStr;

use crate::card::CardState;
use crate::error::DomainError;
use crate::operator::{Role, Roles};

/// A process's symbolic name (`TempCardsProcAssign`), as the audit log records it. A value an
/// area's catalog supplies; names are read back through [`ProcessName::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessName(&'static str);

/// Where a process is started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessScope {
    /// Creates cards; no card exists before it.
    Request,
    /// Started on one card (`POST /cards/{id}/<action>`).
    Card,
    /// Started on a batch order of many cards.
    BatchOrder,
    /// Run by the system on its own.
    System,
}

/// What a card-scoped process takes besides the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing.
    None,
    /// The person who receives the card (`{"person": "<id>"}`).
    Person,
    /// Why, optionally (`{"reason": "lost" | "stolen" | "damaged" | "returned" | "other",
    /// "comment": "..."}`).
    Reason,
}

/// One row of a catalog.
#[derive(Debug, Clone, Copy)]
pub struct ProcessDef {
    pub name: ProcessName,
    /// The name operators see.
    pub title: &'static str,
    /// The action word in the card's API path, for card-scoped processes.
    pub action: &'static str,
    pub scope: ProcessScope,
    /// States the card must be in; empty for the request, which creates cards.
    pub from: &'static [CardState],
    /// The state the card is in afterwards when the process succeeds.
    pub to: CardState,
    /// The role an operator needs; `None` for system processes.
    pub role: Option<Role>,
    /// What the process takes besides the card.
    pub input: Input,
    /// What the step does, in a sentence for operators and the API's document.
    pub summary: &'static str,
    /// The webhook event a card's step announces, if any. A batch order's production announces
    /// `card.produced` and `card.failed` for each card whatever its area.
    pub event: Option<crate::events::EventType>,
}

impl ProcessName {
    /// A process called `name`, for an area's catalog.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The process called `s` in any area's catalog.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        crate::area::AREAS
            .iter()
            .flat_map(|area| area.catalog)
            .find(|def| def.name.0 == s)
            .map(|def| def.name)
            .ok_or_else(|| DomainError::invalid("process", format!("unknown process '{s}'")))
    }

    /// This process's row of its area's catalog.
    pub fn def(self) -> &'static ProcessDef {
        crate::area::AREAS
            .iter()
            .flat_map(|area| area.catalog)
            .find(|def| def.name == self)
            .expect("a process name comes from a catalog")
    }

    /// The area whose catalog lists this process.
    pub fn area(self) -> &'static crate::area::Area {
        crate::area::AREAS
            .iter()
            .copied()
            .find(|area| area.catalog.iter().any(|def| def.name == self))
            .expect("a process name comes from a catalog")
    }

    /// The state a card in `state` ends in after this process, or why the process is refused.
    pub fn transition(self, state: CardState) -> Result<CardState, DomainError> {
        let def = self.def();
        if def.from.contains(&state) {
            Ok(def.to)
        } else {
            Err(DomainError::WrongState {
                process: self.as_str(),
                state: state.as_str(),
                allowed: def
                    .from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            })
        }
    }
}

impl fmt::Display for ProcessName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for ProcessName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The processes of `catalog` an operator with `roles` may start on one card in `state`, in
/// catalog order.
pub fn card_processes_allowed(
    catalog: &'static [ProcessDef],
    state: CardState,
    roles: &Roles,
) -> Vec<&'static ProcessDef> {
    catalog
        .iter()
        .filter(|def| def.scope == ProcessScope::Card)
        .filter(|def| def.from.contains(&state))
        .filter(|def| def.role.is_some_and(|role| roles.contains(role)))
        .collect()
}
