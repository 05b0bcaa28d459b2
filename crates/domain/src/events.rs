//! What the card areas announce to other systems (webhook event types) and to people (mails),
//! and which audit events they come from.

use std::fmt;
use std::str::FromStr;

use crate::batch_order::OrderState;
use crate::catalog::{ProcessName, ProcessScope};
use crate::DomainError;

/// An event type a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    CardRequested,
    CardProduced,
    CardFailed,
    CardAssigned,
    CardWithdrawn,
    CardExtended,
    CardLocked,
    CardExpired,
    BatchOrderCompleted,
    /// A signed checkpoint of the audit log's head, published now and then. It comes from no
    /// audit event: publishing one writes nothing to the log it vouches for.
    AuditCheckpoint,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::CardRequested,
        EventType::CardProduced,
        EventType::CardFailed,
        EventType::CardAssigned,
        EventType::CardWithdrawn,
        EventType::CardExtended,
        EventType::CardLocked,
        EventType::CardExpired,
        EventType::BatchOrderCompleted,
        EventType::AuditCheckpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CardRequested => "card.requested",
            EventType::CardProduced => "card.produced",
            EventType::CardFailed => "card.failed",
            EventType::CardAssigned => "card.assigned",
            EventType::CardWithdrawn => "card.withdrawn",
            EventType::CardExtended => "card.extended",
            EventType::CardLocked => "card.locked",
            EventType::CardExpired => "card.expired",
            EventType::BatchOrderCompleted => "batch_order.completed",
            EventType::AuditCheckpoint => "audit.checkpoint",
        }
    }

    /// The event type an audit event announces, if any: `process` is the event's process name,
    /// `card` whether it is about one card, `new_state` the state it left.
    pub fn of_audit_event(process: &str, card: bool, new_state: Option<&str>) -> Option<Self> {
        let def = process.parse::<ProcessName>().ok()?.def();
        match (def.scope, card) {
            // A batch order's production: each card produced or failed, the order completed.
            (ProcessScope::BatchOrder, true) => {
                let new_state = new_state?;
                if new_state == def.to.as_str() {
                    Some(EventType::CardProduced)
                } else if new_state == def.name.area().production_failed.as_str() {
                    Some(EventType::CardFailed)
                } else {
                    None
                }
            }
            (ProcessScope::BatchOrder, false) => (new_state? == OrderState::Completed.as_str())
                .then_some(EventType::BatchOrderCompleted),
            (_, true) => def.event,
            (_, false) => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid(
                    "events",
                    format!(
                        "unknown event type '{s}'; known: {}",
                        Self::ALL.map(EventType::as_str).join(", ")
                    ),
                )
            })
    }
}

/// A mail Cardwright sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MailKind {
    /// To the holder (and the desk) some days before an assigned card's validity ends.
    Reminder,
    /// To the holder when a card is assigned.
    Assigned,
    /// To the desk when an assigned card expired without being returned.
    Expired,
}

impl MailKind {
    pub const ALL: [MailKind; 3] = [MailKind::Reminder, MailKind::Assigned, MailKind::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Reminder => "reminder",
            MailKind::Assigned => "assigned",
            MailKind::Expired => "expired",
        }
    }
}

impl fmt::Display for MailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MailKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid(
                    "kind",
                    format!("unknown mail '{s}'; known: reminder, assigned, expired"),
                )
            })
    }
}

/// A language messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Language {
    #[default]
    En,
    De,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::En, Language::De];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid("language", format!("unknown language '{s}'; known: en, de"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
        }
        for k in MailKind::ALL {
            assert_eq!(k.as_str().parse::<MailKind>().unwrap(), k);
        }
        assert!("card.eaten".parse::<EventType>().is_err());
    }

    #[test]
    fn audit_events_map_to_event_types() {
        let of = EventType::of_audit_event;
        assert_eq!(
            of("TempCardsProcAssign", true, Some("assigned")),
            Some(EventType::CardAssigned)
        );
        assert_eq!(
            of("TempCardsBoProcIssueMultiple", true, Some("unassigned")),
            Some(EventType::CardProduced)
        );
        assert_eq!(
            of("TempCardsBoProcIssueMultiple", true, Some("failed")),
            Some(EventType::CardFailed)
        );
        assert_eq!(
            of("TempCardsBoProcIssueMultiple", false, Some("completed")),
            Some(EventType::BatchOrderCompleted)
        );
        assert_eq!(
            of("TempCardsBoProcIssueMultiple", false, Some("open")),
            None
        );
        assert_eq!(of("PersonCreate", false, None), None);
    }
}
