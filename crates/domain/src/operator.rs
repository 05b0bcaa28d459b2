//! Operators and their roles.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;
use crate::ids::OperatorId;

/// What an operator may do: the roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    ProductionAdmin,
    RegistrationOfficer,
    PolicyAdmin,
    ServiceAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::ProductionAdmin,
        Role::RegistrationOfficer,
        Role::PolicyAdmin,
        Role::ServiceAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProductionAdmin => "production-admin",
            Role::RegistrationOfficer => "registration-officer",
            Role::PolicyAdmin => "policy-admin",
            Role::ServiceAdmin => "service-admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s.trim())
            .ok_or_else(|| {
                DomainError::invalid(
                    "role",
                    format!(
                        "'{s}' is not a role; use one of {}",
                        Role::ALL.map(Role::as_str).join(", ")
                    ),
                )
            })
    }
}

/// A set of roles, never empty for a real operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(BTreeSet<Role>);

impl Roles {
    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn contains_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.contains(*role))
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The comma separated form used in storage and logs.
    pub fn to_list(&self) -> String {
        self.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
    }

    /// Parses a comma separated list, as stored.
    pub fn parse_list(s: &str) -> Result<Self, DomainError> {
        s.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<T: IntoIterator<Item = Role>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// An operator's login name: 2 to 64 characters of letters, digits, `.`, `_`, `-` and `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if (2..=64).contains(&s.len()) && ok_chars {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(DomainError::invalid(
                "username",
                "a username has 2 to 64 letters, digits, '.', '_', '-' or '@'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The smallest password length accepted for an operator.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Checks a new operator password before it is hashed.
pub fn check_new_password(password: &str) -> Result<(), DomainError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(DomainError::invalid(
            "password",
            format!("a password has at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(DomainError::invalid(
            "password",
            "a password has at most 1024 bytes",
        ));
    }
    Ok(())
}

/// An operator account as the rest of the system sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: OperatorId,
    pub username: Username,
    pub roles: Roles,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_as_a_list() {
        let roles = Roles::parse_list("service-admin,production-admin").unwrap();
        assert!(roles.contains(Role::ServiceAdmin));
        assert!(!roles.contains(Role::PolicyAdmin));
        assert_eq!(Roles::parse_list(&roles.to_list()), Ok(roles));
        assert!(Roles::parse_list("admin").is_err());
    }

    #[test]
    fn usernames_are_checked_and_lowercased() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("a").is_err());
        assert!(Username::parse("bad name").is_err());
    }
}
