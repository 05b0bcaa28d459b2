//! Cardwright's processes: one module per use case, grouped by card area (`temp_cards`), with the
//! shared ones (persons, templates, operators' login, audit, option scripts) at the root and the
//! services they use (option script runtime, certificate authority) in `services`. Each process
//! checks the operator's role, applies the domain's rules and writes its state change and audit
//! event in one transaction.

pub mod audit;
pub mod auth;
pub mod card_process;
mod context;
mod error;
mod holder_certificates;
pub mod keys;
pub mod notify;
pub mod operators;
mod paging;
pub mod persons;
pub mod persons_import;
pub mod photos;
pub mod pki;
pub mod scripts;
pub mod services;
pub mod stations;
pub mod temp_cards;
pub mod templates;

pub use cardwright_station::reason as report;
pub use context::{
    Clock, Context, Entropy, LoginPolicy, ManualClock, OsEntropy, Settings, StationSettings,
    SystemClock,
};
pub use error::ProcessError;
pub use paging::{page_limit, DEFAULT_PAGE, MAX_PAGE};
pub use templates::parse_side;

use cardwright_domain::temp_cards::ProcessName;
use cardwright_domain::{Operator, Role};

/// Who performs a step: an operator, or the system itself (expiry, start-up, the command line).
#[derive(Debug, Clone)]
pub enum Actor {
    Operator(Operator),
    System(&'static str),
}

impl Actor {
    /// The name written to the audit log.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Operator(op) => op.username.as_str().to_owned(),
            Actor::System(name) => (*name).to_owned(),
        }
    }
}

/// Refuses an operator who has none of `roles`.
pub fn require_any(actor: &Operator, roles: &[Role], what: &str) -> Result<(), ProcessError> {
    if actor.roles.contains_any(roles) {
        Ok(())
    } else {
        Err(ProcessError::Forbidden(format!(
            "{what} needs the role {}",
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

/// Refuses an operator who lacks the role a catalog process requires.
pub fn require_process_role(actor: &Operator, process: ProcessName) -> Result<(), ProcessError> {
    match process.def().role {
        Some(role) => require_any(actor, &[role], process.def().title),
        None => Err(ProcessError::Forbidden(format!(
            "{process} is run by the system only"
        ))),
    }
}
