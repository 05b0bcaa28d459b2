//! Property: no sequence of process calls takes a card anywhere the process table forbids.

use cardwright_domain::temp_cards::processes::{
    ABORT, ASSIGN, EXPIRE, EXTEND, ISSUE_MULTIPLE, LOCK, REQUEST, WITHDRAW,
};
use cardwright_domain::temp_cards::states::{
    ABORTED, ALL, ASSIGNED, EXPIRED, FAILED, LOCKED, REQUESTED, UNASSIGNED,
};
use cardwright_domain::temp_cards::{AREA, CATALOG};
use cardwright_domain::{CardState, ProcessName};
use proptest::prelude::*;

/// The process table (states before and after each process), written out again on its own so
/// the catalog is checked against it.
/// One arm per row of the table, even where two rows end in the same state.
#[allow(clippy::match_same_arms)]
fn design_table(process: ProcessName, state: CardState) -> Option<CardState> {
    match (process, state) {
        (ABORT, REQUESTED) => Some(ABORTED),
        (ISSUE_MULTIPLE, REQUESTED | FAILED) => Some(UNASSIGNED),
        (ASSIGN, UNASSIGNED) => Some(ASSIGNED),
        (WITHDRAW, ASSIGNED | EXPIRED) => Some(UNASSIGNED),
        (EXTEND, ASSIGNED) => Some(ASSIGNED),
        (LOCK, ASSIGNED | UNASSIGNED) => Some(LOCKED),
        (EXPIRE, ASSIGNED) => Some(EXPIRED),
        _ => None,
    }
}

fn any_process() -> impl Strategy<Value = ProcessName> {
    prop::sample::select(CATALOG.iter().map(|d| d.name).collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn sequences_follow_the_design_table(steps in prop::collection::vec(any_process(), 0..40)) {
        let mut state = REQUESTED;
        for process in steps {
            let before = state;
            match (process.transition(state), design_table(process, state)) {
                (Ok(next), Some(expected)) => {
                    prop_assert_eq!(next, expected);
                    state = next;
                }
                (Err(_), None) => {}
                (got, expected) => prop_assert!(false, "{process} from {before}: got {got:?}, table says {expected:?}"),
            }
            prop_assert!(!AREA.is_final(before) || state == before, "left final state {before}");
        }
    }

    #[test]
    fn requests_create_but_never_transition(state in prop::sample::select(ALL.to_vec())) {
        prop_assert!(REQUEST.transition(state).is_err());
    }
}
