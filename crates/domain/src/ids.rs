//! Identifiers. Each is a UUID (version 7, so they sort by creation time) behind its own type.
//!
//! An id is read only in the one form it is written in: 36 characters, lower-case hex digits in
//! groups of 8-4-4-4-12 joined by dashes. The API states that form as a pattern, so an id has one
//! spelling and two spellings never name the same card.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::DomainError;

/// A UUID in its written form only; braces, `urn:uuid:`, missing dashes, upper case and
/// surrounding spaces are refused.
fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s)
        .ok()
        .filter(|uuid| *uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == *s)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Builds a fresh id from a creation time (milliseconds since the epoch) and ten random
            /// bytes supplied by the caller.
            pub fn new(unix_millis: u64, random: [u8; 10]) -> Self {
                Self(uuid::Builder::from_unix_timestamp_millis(unix_millis, &random).into_uuid())
            }

            pub fn parse(s: &str) -> Result<Self, DomainError> {
                parse_uuid(s)
                    .map(Self)
                    .ok_or_else(|| DomainError::invalid($field, format!("'{s}' is not a valid id")))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// A card.
    CardId, "card"
);
id_type!(
    /// A person (card holder).
    PersonId, "person"
);
id_type!(
    /// A card template.
    TemplateId, "template"
);
id_type!(
    /// An operator account.
    OperatorId, "operator"
);
id_type!(
    /// A batch order.
    BatchOrderId, "batch_order"
);
id_type!(
    /// A webhook subscription.
    WebhookId, "webhook"
);
id_type!(
    /// One event's delivery to one webhook subscription.
    DeliveryId, "delivery"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_in_their_written_form_only() {
        let id = CardId::new(1_700_000_000_000, [7; 10]);
        assert_eq!(CardId::parse(&id.to_string()), Ok(id));
        for other in [
            id.to_string().to_uppercase(),
            format!(" {id}"),
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            id.as_uuid().simple().to_string(),
        ] {
            assert!(CardId::parse(&other).is_err(), "{other} was accepted");
        }
    }
}
