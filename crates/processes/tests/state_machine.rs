//! Property: random sequences of process calls on real stored cards (SQLite) end exactly where
//! a model of the process catalog says, and every refused call leaves the cards as they were.

use cardwright_domain::temp_cards::states;
use std::sync::Arc;

use cardwright_domain::temp_cards::CardState;
use cardwright_domain::{CardId, Operator, PersonState, Role, Roles, Timestamp};
use cardwright_processes::persons::NewPerson;
use cardwright_processes::temp_cards::{abort, assign, expire, extend, lock, request, withdraw};
use cardwright_processes::{
    auth, persons, templates, Actor, Clock, Context, ManualClock, ProcessError, Settings,
};
use cardwright_storage::audit::AuditKey;
use cardwright_storage::{cards, Store};
use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Step {
    Produce(usize),
    Abort(usize),
    Assign(usize),
    Withdraw(usize),
    Extend(usize),
    Lock(usize),
    /// Time passes: `days` days, then the expiry job runs.
    Wait(i64),
}

fn step() -> impl Strategy<Value = Step> {
    let card = 0..3usize;
    prop_oneof![
        card.clone().prop_map(Step::Produce),
        card.clone().prop_map(Step::Abort),
        card.clone().prop_map(Step::Assign),
        card.clone().prop_map(Step::Withdraw),
        card.clone().prop_map(Step::Extend),
        card.prop_map(Step::Lock),
        (1..20i64).prop_map(Step::Wait),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Model {
    state: CardState,
    valid_until: Option<Timestamp>,
}

struct World {
    ctx: Context,
    clock: Arc<ManualClock>,
    officer: Operator,
    person: cardwright_domain::PersonId,
    cards: Vec<CardId>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&Store::sqlite_url(&dir.path().join("cw.db")))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
    ));
    let ctx = Context::new(
        store,
        clock.clone(),
        Settings::default(),
        AuditKey::derive(&[7; 32]),
    );
    // As when an installation's keys are made: the empty log's head is signed first.
    let mut tx = ctx.store.begin().await.unwrap();
    cardwright_storage::audit::sign_empty(&mut tx, &ctx.audit_key)
        .await
        .unwrap();
    Store::commit(tx).await.unwrap();
    templates::ensure_default(&ctx).await.unwrap();
    let roles: Roles = [Role::RegistrationOfficer].into_iter().collect();
    let officer = auth::add_operator(
        &ctx,
        &Actor::System("test"),
        "officer",
        roles,
        "long enough password",
    )
    .await
    .unwrap();
    let person = persons::create(
        &ctx,
        &officer,
        NewPerson {
            employee_number: "E-1".into(),
            given_name: "Ann".into(),
            family_name: "Example".into(),
            ..NewPerson::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(person.state, PersonState::Active);
    let cards = request::request(&ctx, &officer, "Temporary card", 3)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.card.id)
        .collect();
    World {
        ctx,
        clock,
        officer,
        person: person.id,
        cards,
        _dir: dir,
    }
}

/// What the model says one step does; `None` when it must be refused.
fn expected(models: &[Model], step: Step, now: Timestamp) -> Option<Vec<Model>> {
    use cardwright_domain::temp_cards::states::{
        ABORTED, ASSIGNED, EXPIRED, LOCKED, REQUESTED, UNASSIGNED,
    };
    let mut next = models.to_vec();
    let assigned = models.iter().filter(|m| m.state == ASSIGNED).count();
    match step {
        Step::Produce(i) if models[i].state == REQUESTED => next[i].state = UNASSIGNED,
        Step::Abort(i) if models[i].state == REQUESTED => next[i].state = ABORTED,
        // One person, at most one assigned card at a time.
        Step::Assign(i) if models[i].state == UNASSIGNED && assigned == 0 => {
            next[i] = Model {
                state: ASSIGNED,
                valid_until: Some(now + Duration::days(14)),
            };
        }
        Step::Withdraw(i) if matches!(models[i].state, ASSIGNED | EXPIRED) => {
            next[i] = Model {
                state: UNASSIGNED,
                valid_until: None,
            };
        }
        Step::Extend(i) if models[i].state == ASSIGNED => {
            next[i].valid_until = models[i].valid_until.map(|t| t + Duration::days(14));
        }
        Step::Lock(i) if matches!(models[i].state, ASSIGNED | UNASSIGNED) => next[i].state = LOCKED,
        Step::Wait(days) => {
            let later = now + Duration::days(days);
            for m in &mut next {
                if m.state == ASSIGNED && m.valid_until.is_some_and(|t| t <= later) {
                    m.state = EXPIRED;
                }
            }
        }
        _ => return None,
    }
    Some(next)
}

async fn perform(w: &World, step: Step) -> Result<(), ProcessError> {
    let (ctx, op) = (&w.ctx, &w.officer);
    match step {
        Step::Produce(i) => {
            // Until the batch order exists, production is staged through the store.
            let mut tx = ctx.store.begin().await?;
            let mut card = cards::get(&mut tx, w.cards[i]).await?.unwrap().card;
            if card.state != states::REQUESTED {
                return Err(ProcessError::Conflict("not requested".into()));
            }
            card.state = states::UNASSIGNED;
            assert!(cards::update_if_state(&mut tx, &card, states::REQUESTED).await?);
            Store::commit(tx).await?;
        }
        Step::Abort(i) => drop(abort::abort(ctx, op, w.cards[i]).await?),
        Step::Assign(i) => drop(assign::assign(ctx, op, w.cards[i], w.person).await?),
        Step::Withdraw(i) => drop(withdraw::withdraw(ctx, op, w.cards[i], None).await?),
        Step::Extend(i) => drop(extend::extend(ctx, op, w.cards[i]).await?),
        Step::Lock(i) => drop(lock::lock(ctx, op, w.cards[i], None).await?),
        Step::Wait(days) => {
            w.clock.advance(Duration::days(days));
            expire::expire_due(ctx).await?;
        }
    }
    Ok(())
}

async fn stored(w: &World) -> Vec<Model> {
    let mut conn = w.ctx.store.reader().await.unwrap();
    let mut out = Vec::new();
    for id in &w.cards {
        let card = cards::get(&mut conn, *id).await.unwrap().unwrap().card;
        out.push(Model {
            state: card.state,
            valid_until: card.valid_until,
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn stored_cards_follow_the_model(steps in prop::collection::vec(step(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let w = world().await;
            let mut models = stored(&w).await;
            // Extensions of each card's current assignment: max_extensions (2 by default)
            // refuses a third.
            let mut extensions = vec![0u32; models.len()];
            for step in steps {
                let now = w.clock.now();
                let want = match step {
                    Step::Extend(i) if extensions[i] >= 2 => None,
                    _ => expected(&models, step, now),
                };
                match (step, &want) {
                    (Step::Assign(i), Some(_)) => extensions[i] = 0,
                    (Step::Extend(i), Some(_)) => extensions[i] += 1,
                    _ => {}
                }
                let got = perform(&w, step).await;
                let agrees = matches!(
                    (&want, &got),
                    (Some(_), Ok(())) | (None, Err(ProcessError::Conflict(_)))
                );
                assert!(agrees, "{step:?} from {models:?}: model says {want:?}, process gave {got:?}");
                if let Some(next) = want {
                    models = next;
                }
                let now_stored = stored(&w).await;
                assert_eq!(now_stored, models, "after {step:?}");
            }
        });
    }
}
