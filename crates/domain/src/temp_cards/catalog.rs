//! The catalog of the temporary card processes: every process, the states it needs, the state it
//! leaves, the role it requires and what it takes as input.

use super::processes as p;
use super::states as s;
use crate::card::CardState;
use crate::catalog::{card_processes_allowed as allowed, Input, ProcessDef, ProcessScope};
use crate::events::EventType;
use crate::operator::{Role, Roles};

/// The name of the option script the temporary card processes read their options from.
pub const OPTION_SCRIPT: &str = "TempCardsScriptOptions";

/// The catalog of the temporary card processes.
pub const CATALOG: [ProcessDef; 8] = [
    ProcessDef {
        name: p::REQUEST,
        title: "Request temporary cards",
        action: "request",
        scope: ProcessScope::Request,
        from: &[],
        to: s::REQUESTED,
        role: Some(Role::RegistrationOfficer),
        input: Input::None,
        summary: "Creates cards in state requested, each with a unique serial.",
        event: Some(EventType::CardRequested),
    },
    ProcessDef {
        name: p::ABORT,
        title: "Abort temporary card",
        action: "abort",
        scope: ProcessScope::Card,
        from: &[s::REQUESTED],
        to: s::ABORTED,
        role: Some(Role::RegistrationOfficer),
        input: Input::None,
        summary: "A requested card that will not be produced: requested → aborted.",
        event: None,
    },
    ProcessDef {
        name: p::ISSUE_MULTIPLE,
        title: "Issue multiple temporary cards",
        action: "issue",
        scope: ProcessScope::BatchOrder,
        from: &[s::REQUESTED, s::FAILED],
        to: s::UNASSIGNED,
        role: Some(Role::ProductionAdmin),
        input: Input::None,
        summary: "Produces the cards of a batch order: requested or failed → unassigned.",
        event: None,
    },
    ProcessDef {
        name: p::ASSIGN,
        title: "Assign temporary card",
        action: "assign",
        scope: ProcessScope::Card,
        from: &[s::UNASSIGNED],
        to: s::ASSIGNED,
        role: Some(Role::RegistrationOfficer),
        input: Input::Person,
        summary: "Hands an unassigned card to an active person, valid for the configured days: unassigned → assigned.",
        event: Some(EventType::CardAssigned),
    },
    ProcessDef {
        name: p::WITHDRAW,
        title: "Withdraw temporary card",
        action: "withdraw",
        scope: ProcessScope::Card,
        from: &[s::ASSIGNED, s::EXPIRED],
        to: s::UNASSIGNED,
        role: Some(Role::RegistrationOfficer),
        input: Input::Reason,
        summary: "Takes a card back from its holder: assigned or expired → unassigned; the holder is cleared.",
        event: Some(EventType::CardWithdrawn),
    },
    ProcessDef {
        name: p::EXTEND,
        title: "Extend temporary card",
        action: "extend",
        scope: ProcessScope::Card,
        from: &[s::ASSIGNED],
        to: s::ASSIGNED,
        role: Some(Role::RegistrationOfficer),
        input: Input::None,
        summary: "Moves valid_until on by the configured days; the card stays assigned.",
        event: Some(EventType::CardExtended),
    },
    ProcessDef {
        name: p::LOCK,
        title: "Lock temporary card",
        action: "lock",
        scope: ProcessScope::Card,
        from: &[s::ASSIGNED, s::UNASSIGNED],
        to: s::LOCKED,
        role: Some(Role::RegistrationOfficer),
        input: Input::Reason,
        summary: "Locks a card for good: assigned or unassigned → locked.",
        event: Some(EventType::CardLocked),
    },
    ProcessDef {
        name: p::EXPIRE,
        title: "Expire temporary card",
        action: "expire",
        scope: ProcessScope::System,
        from: &[s::ASSIGNED],
        to: s::EXPIRED,
        role: None,
        input: Input::None,
        summary: "Run by the system when a card's validity ends: assigned → expired.",
        event: Some(EventType::CardExpired),
    },
];

/// The processes an operator with `roles` may start on one temporary card in `state`, in
/// catalog order.
pub fn card_processes_allowed(state: CardState, roles: &Roles) -> Vec<&'static ProcessDef> {
    allowed(&CATALOG, state, roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_officer_sees_withdraw_extend_lock_on_assigned() {
        let roles = Roles::from_iter([Role::RegistrationOfficer]);
        let names: Vec<_> = card_processes_allowed(s::ASSIGNED, &roles)
            .iter()
            .map(|d| d.action)
            .collect();
        assert_eq!(names, ["withdraw", "extend", "lock"]);
        let service = Roles::from_iter([Role::ServiceAdmin]);
        assert!(card_processes_allowed(s::ASSIGNED, &service).is_empty());
    }
}
