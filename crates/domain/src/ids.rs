//! Identifiers. Each is a UUID (version 7, so they sort by creation time) behind its own type.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::DomainError;

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
                Uuid::try_parse(s.trim())
                    .map(Self)
                    .map_err(|_| DomainError::invalid($field, format!("'{s}' is not a valid id")))
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
