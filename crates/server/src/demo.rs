//! `serve --demo`: a few persons, requested cards and a demo operator, so a newcomer can try
//! every process at once.

use cardwright_domain::template::DEFAULT_TEMPLATE_NAME;
use cardwright_domain::{Role, Roles};
use cardwright_processes::persons::{self, NewPerson};
use cardwright_processes::temp_cards::request;
use cardwright_processes::{auth, Actor, Context, ProcessError};

/// The demo operator's name.
pub const DEMO_USER: &str = "demo";

const PERSONS: [(&str, &str, &str); 5] = [
    ("E-1001", "Ada", "Lovelace"),
    ("E-1002", "Grace", "Hopper"),
    ("E-1003", "Alan", "Turing"),
    ("E-1004", "Katherine", "Johnson"),
    ("E-1005", "Edsger", "Dijkstra"),
];

/// Seeds the demo data once and says how to log in.
pub async fn seed(ctx: &Context, listen: &str) -> anyhow::Result<()> {
    let mut password_bytes = [0u8; 9];
    ctx.entropy.fill(&mut password_bytes);
    let password = hex::encode(password_bytes);
    let roles: Roles = Role::ALL.into_iter().collect();
    let operator = match auth::add_operator(
        ctx,
        &Actor::System("demo"),
        DEMO_USER,
        roles,
        &password,
    )
    .await
    {
        Ok(op) => op,
        Err(ProcessError::Conflict(_)) => {
            println!(
                "Demo data exists already. Log in as '{DEMO_USER}' with the password printed when it was created,\n\
                 or add an operator: cardwright operator add NAME --role registration-officer --password-stdin"
            );
            return Ok(());
        }
        Err(e) => return Err(anyhow::anyhow!("creating the demo operator: {e}")),
    };
    for (number, given, family) in PERSONS {
        let new = NewPerson {
            employee_number: number.into(),
            given_name: given.into(),
            family_name: family.into(),
            email: Some(format!(
                "{}.{}@example.com",
                given.to_lowercase(),
                family.to_lowercase()
            )),
            state: None,
        };
        match persons::create(ctx, &operator, new).await {
            Ok(_) | Err(ProcessError::Conflict(_)) => {}
            Err(e) => return Err(anyhow::anyhow!("creating demo persons: {e}")),
        }
    }
    request::request(ctx, &operator, DEFAULT_TEMPLATE_NAME, 12)
        .await
        .map_err(|e| anyhow::anyhow!("requesting demo cards: {e}"))?;
    println!(
        "Demo data ready: 5 persons, 12 requested temporary cards.\n\
         Log in as '{DEMO_USER}' with password '{password}' (all roles):\n  \
         curl -s -X POST http://{listen}/api/v1/auth/login -H 'Content-Type: application/json' \\\n    \
         -d '{{\"username\":\"{DEMO_USER}\",\"password\":\"{password}\"}}'"
    );
    Ok(())
}
