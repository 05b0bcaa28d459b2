//! The process catalog: every temporary card process, the states it needs, the state it leaves,
//! the role it requires and what it takes as input. The API, the UI, the command line and the
//! tests all read this one table; `cardwright_processes::temp_cards::run` dispatches on it.

use std::fmt;
use std::str::FromStr;

use super::card::CardState;
use crate::error::DomainError;
use crate::operator::{Role, Roles};

/// Symbolic names of the temporary card processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessName {
    TempCardsProcRequest,
    TempCardsProcAbort,
    TempCardsBoProcIssueMultiple,
    TempCardsProcAssign,
    TempCardsProcWithdraw,
    TempCardsProcExtend,
    TempCardsProcLock,
    TempCardsSysExpire,
}

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

/// The name of the option script the temporary card processes read their options from.
pub const OPTION_SCRIPT: &str = "TempCardsScriptOptions";

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

/// One row of the catalog.
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
}

use CardState as S;

/// The catalog of the temporary card processes.
pub const CATALOG: [ProcessDef; 8] = [
    ProcessDef {
        name: ProcessName::TempCardsProcRequest,
        title: "Request temporary cards",
        action: "request",
        scope: ProcessScope::Request,
        from: &[],
        to: S::Requested,
        role: Some(Role::RegistrationOfficer),
        input: Input::None,
        summary: "Creates cards in state requested, each with a unique serial.",
    },
    ProcessDef {
        name: ProcessName::TempCardsProcAbort,
        title: "Abort temporary card",
        action: "abort",
        scope: ProcessScope::Card,
        from: &[S::Requested],
        to: S::Aborted,
        role: Some(Role::RegistrationOfficer),
        input: Input::None,
        summary: "A requested card that will not be produced: requested → aborted.",
    },
    ProcessDef {
        name: ProcessName::TempCardsBoProcIssueMultiple,
        title: "Issue multiple temporary cards",
        action: "issue",
        scope: ProcessScope::BatchOrder,
        from: &[S::Requested, S::Failed],
        to: S::Unassigned,
        role: Some(Role::ProductionAdmin),
        input: Input::None,
        summary: "Produces the cards of a batch order: requested or failed → unassigned.",
    },
    ProcessDef {
        name: ProcessName::TempCardsProcAssign,
        title: "Assign temporary card",
        action: "assign",
        scope: ProcessScope::Card,
        from: &[S::Unassigned],
        to: S::Assigned,
        role: Some(Role::RegistrationOfficer),
        input: Input::Person,
        summary: "Hands an unassigned card to an active person, valid for the configured days: unassigned → assigned.",
    },
    ProcessDef {
        name: ProcessName::TempCardsProcWithdraw,
        title: "Withdraw temporary card",
        action: "withdraw",
        scope: ProcessScope::Card,
        from: &[S::Assigned, S::Expired],
        to: S::Unassigned,
        role: Some(Role::RegistrationOfficer),
        input: Input::Reason,
        summary: "Takes a card back from its holder: assigned or expired → unassigned; the holder is cleared.",
    },
    ProcessDef {
        name: ProcessName::TempCardsProcExtend,
        title: "Extend temporary card",
        action: "extend",
        scope: ProcessScope::Card,
        from: &[S::Assigned],
        to: S::Assigned,
        role: Some(Role::RegistrationOfficer),
        input: Input::None,
        summary: "Moves valid_until on by the configured days; the card stays assigned.",
    },
    ProcessDef {
        name: ProcessName::TempCardsProcLock,
        title: "Lock temporary card",
        action: "lock",
        scope: ProcessScope::Card,
        from: &[S::Assigned, S::Unassigned],
        to: S::Locked,
        role: Some(Role::RegistrationOfficer),
        input: Input::Reason,
        summary: "Locks a card for good: assigned or unassigned → locked.",
    },
    ProcessDef {
        name: ProcessName::TempCardsSysExpire,
        title: "Expire temporary card",
        action: "expire",
        scope: ProcessScope::System,
        from: &[S::Assigned],
        to: S::Expired,
        role: None,
        input: Input::None,
        summary: "Run by the system when a card's validity ends: assigned → expired.",
    },
];

impl ProcessName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessName::TempCardsProcRequest => "TempCardsProcRequest",
            ProcessName::TempCardsProcAbort => "TempCardsProcAbort",
            ProcessName::TempCardsBoProcIssueMultiple => "TempCardsBoProcIssueMultiple",
            ProcessName::TempCardsProcAssign => "TempCardsProcAssign",
            ProcessName::TempCardsProcWithdraw => "TempCardsProcWithdraw",
            ProcessName::TempCardsProcExtend => "TempCardsProcExtend",
            ProcessName::TempCardsProcLock => "TempCardsProcLock",
            ProcessName::TempCardsSysExpire => "TempCardsSysExpire",
        }
    }

    /// This process's row of the catalog.
    pub fn def(self) -> &'static ProcessDef {
        CATALOG
            .iter()
            .find(|def| def.name == self)
            .expect("every process name has a catalog row")
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
        f.write_str(self.as_str())
    }
}

impl FromStr for ProcessName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CATALOG
            .iter()
            .find(|def| def.name.as_str() == s)
            .map(|def| def.name)
            .ok_or_else(|| DomainError::invalid("process", format!("unknown process '{s}'")))
    }
}

/// The processes an operator with `roles` may start on one card in `state`, in catalog order.
pub fn card_processes_allowed(state: CardState, roles: &Roles) -> Vec<&'static ProcessDef> {
    CATALOG
        .iter()
        .filter(|def| def.scope == ProcessScope::Card)
        .filter(|def| def.from.contains(&state))
        .filter(|def| def.role.is_some_and(|role| roles.contains(role)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for def in &CATALOG {
            assert_eq!(def.name.as_str().parse::<ProcessName>(), Ok(def.name));
        }
    }

    #[test]
    fn registration_officer_sees_withdraw_extend_lock_on_assigned() {
        let roles = Roles::from_iter([Role::RegistrationOfficer]);
        let names: Vec<_> = card_processes_allowed(CardState::Assigned, &roles)
            .iter()
            .map(|d| d.action)
            .collect();
        assert_eq!(names, ["withdraw", "extend", "lock"]);
        let service = Roles::from_iter([Role::ServiceAdmin]);
        assert!(card_processes_allowed(CardState::Assigned, &service).is_empty());
    }
}
