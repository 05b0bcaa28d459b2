//! Property: no sequence of process calls takes a card anywhere the process table forbids.

use cardwright_domain::temp_cards::{CardState, ProcessName, CATALOG};
use proptest::prelude::*;

/// The process table (states before and after each process), written out again on its own so
/// the catalog is checked against it.
/// One arm per row of the table, even where two rows end in the same state.
#[allow(clippy::match_same_arms)]
fn design_table(process: ProcessName, state: CardState) -> Option<CardState> {
    use CardState::*;
    use ProcessName::*;
    match (process, state) {
        (TempCardsProcAbort, Requested) => Some(Aborted),
        (TempCardsBoProcIssueMultiple, Requested | Failed) => Some(Unassigned),
        (TempCardsProcAssign, Unassigned) => Some(Assigned),
        (TempCardsProcWithdraw, Assigned | Expired) => Some(Unassigned),
        (TempCardsProcExtend, Assigned) => Some(Assigned),
        (TempCardsProcLock, Assigned | Unassigned) => Some(Locked),
        (TempCardsSysExpire, Assigned) => Some(Expired),
        _ => None,
    }
}

fn any_process() -> impl Strategy<Value = ProcessName> {
    prop::sample::select(CATALOG.iter().map(|d| d.name).collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn sequences_follow_the_design_table(steps in prop::collection::vec(any_process(), 0..40)) {
        let mut state = CardState::Requested;
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
            prop_assert!(!before.is_final() || state == before, "left final state {before}");
        }
    }

    #[test]
    fn requests_create_but_never_transition(state in prop::sample::select(CardState::ALL.to_vec())) {
        prop_assert!(ProcessName::TempCardsProcRequest.transition(state).is_err());
    }
}
