//! Cardwright's domain: the temporary card lifecycle and the values it is made of.
//!
//! Pure Rust: no database, web, clock or randomness inside. Time arrives as a `now` argument and
//! identifiers are built from bytes the caller supplies, so every rule here is deterministic.

pub mod batch_order;
pub mod card;
pub mod catalog;
pub mod error;
pub mod ids;
pub mod operator;
pub mod options;
pub mod person;
pub mod template;
pub mod text;

pub use batch_order::{BatchOrder, ItemStatus, OrderAction, OrderItem, OrderState};
pub use card::{Amount, Card, CardState, Serial};
pub use catalog::{ProcessDef, ProcessName, ProcessScope, CATALOG};
pub use error::DomainError;
pub use ids::{BatchOrderId, CardId, OperatorId, PersonId, TemplateId};
pub use operator::{Operator, Role, Roles, Username};
pub use options::TempCardOptions;
pub use person::{Email, EmployeeNumber, Person, PersonName, PersonState};
pub use template::{CardTemplate, SerialPrefix, TemplateKind, TemplateName};

/// The point in time every rule is evaluated at.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
