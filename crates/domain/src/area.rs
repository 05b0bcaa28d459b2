//! Card areas. An area is a value: the kind of card a template makes, with its states, the
//! catalog of its processes, the option script they read and the path its requests are made at.
//! The engine (running a card's process, batch orders and production, history, audit, webhooks,
//! the API's and the UI's process routes) is written once against it.

use crate::card::CardState;
use crate::catalog::{card_processes_allowed, ProcessDef, ProcessScope};
use crate::operator::Roles;

/// A card area.
#[derive(Debug)]
pub struct Area {
    /// The template kind whose cards belong to this area (`temporary`).
    pub kind: &'static str,
    /// The area's name for people ("Temporary cards").
    pub title: &'static str,
    /// The path of the area's own requests under `/api/v1` (`temporary-cards`): the request
    /// process creates cards there; every card's process is at `/cards/{id}/<action>`.
    pub route_prefix: &'static str,
    /// The option script the area's processes read their options from.
    pub option_script: &'static str,
    /// Every state a card of the area can be in, in the order lists show them.
    pub states: &'static [CardState],
    /// The states a card never leaves again.
    pub final_states: &'static [CardState],
    /// The state a card is in when its production failed (Repeat production takes it again).
    pub production_failed: CardState,
    /// The area's processes, one row each.
    pub catalog: &'static [ProcessDef],
}

/// Every card area, in the order lists show them.
pub static AREAS: &[&Area] = &[&crate::temp_cards::AREA];

impl Area {
    /// The area of template kind `kind`.
    pub fn of_kind(kind: &str) -> Option<&'static Area> {
        AREAS.iter().copied().find(|area| area.kind == kind)
    }

    /// Whether a card in `state` stays there for good.
    pub fn is_final(&self, state: CardState) -> bool {
        self.final_states.contains(&state)
    }

    /// The processes an operator with `roles` may start on one of the area's cards in `state`.
    pub fn card_processes_allowed(
        &'static self,
        state: CardState,
        roles: &Roles,
    ) -> Vec<&'static ProcessDef> {
        card_processes_allowed(self.catalog, state, roles)
    }

    /// The area's process with scope `scope` (its request, its batch order's production).
    pub fn process_of_scope(&self, scope: ProcessScope) -> Option<&'static ProcessDef> {
        self.catalog.iter().find(|def| def.scope == scope)
    }

    /// The area's card process called by `action` in its API path.
    pub fn card_action(&self, action: &str) -> Option<&'static ProcessDef> {
        self.catalog
            .iter()
            .find(|def| def.scope == ProcessScope::Card && def.action == action)
    }
}

/// Every card process of every area, one row per action word (areas that share an action share
/// its path and its input).
pub fn card_actions() -> Vec<&'static ProcessDef> {
    let mut actions: Vec<&'static ProcessDef> = Vec::new();
    for area in AREAS {
        for def in area
            .catalog
            .iter()
            .filter(|d| d.scope == ProcessScope::Card)
        {
            if !actions.iter().any(|a| a.action == def.action) {
                actions.push(def);
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ProcessName;

    #[test]
    fn every_name_and_state_parses_back() {
        for area in AREAS {
            for def in area.catalog {
                assert_eq!(def.name.as_str().parse::<ProcessName>(), Ok(def.name));
                assert!(area.states.contains(&def.to), "{}", def.name);
                assert!(
                    def.from.iter().all(|s| area.states.contains(s)),
                    "{}",
                    def.name
                );
            }
            for state in area.states {
                assert_eq!(state.as_str().parse::<CardState>(), Ok(*state));
            }
            assert!(Area::of_kind(area.kind).is_some_and(|a| std::ptr::eq(a, *area)));
        }
    }

    #[test]
    fn an_action_has_one_input_whatever_its_area() {
        for def in card_actions() {
            for area in AREAS {
                if let Some(other) = area.card_action(def.action) {
                    assert_eq!(other.input, def.input, "{}", def.action);
                }
            }
        }
    }
}
