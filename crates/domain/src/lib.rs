//! Cardwright's domain: the values cards are made of, the card areas as values, and the rules of
//! each area.
//!
//! Pure Rust: no database, web, clock or randomness inside. Time arrives as a `now` argument and
//! identifiers are built from bytes the caller supplies, so every rule here is deterministic.

pub mod area;
pub mod batch_order;
pub mod card;
pub mod catalog;
pub mod error;
pub mod events;
pub mod ids;
pub mod operator;
pub mod person;
pub mod reason;
pub mod temp_cards;
pub mod template;
pub mod text;

pub use area::Area;
pub use card::{Card, CardState, Serial};
pub use catalog::{Input, ProcessDef, ProcessName, ProcessScope};
pub use error::DomainError;
pub use ids::{BatchOrderId, CardId, DeliveryId, OperatorId, PersonId, TemplateId, WebhookId};
pub use operator::{Operator, Role, Roles, Username};
pub use person::{Email, EmployeeNumber, Person, PersonName, PersonState};
pub use template::{CardTemplate, SerialPrefix, TemplateKind, TemplateName};
pub use text::{FreeText, TextRule};

/// The point in time every rule is evaluated at.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
