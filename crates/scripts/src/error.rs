//! Why a script was refused, with the line and column to show the administrator.

use crate::options::OPTION_NAMES;

/// Why a script could not be compiled or evaluated.
///
/// Lines and columns are 1-based and count characters. Every message is written for the
/// administrator who edits the script.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScriptError {
    /// The script does not parse.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The script failed while running (a thrown error, a type mismatch in an operator,
    /// division by zero, calling an unknown function, ...).
    #[error("{}", at(*.line, *.column, message))]
    Runtime {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The script went over one of the sandbox limits (operations, time, size of a value,
    /// nesting depth, length of the source); the message names the limit.
    #[error("{}", at(*.line, *.column, message))]
    Limit {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The script sets or declares a variable that is not one of the options and whose name
    /// does not start with `_`, most often a misspelled option.
    #[error("{}", at(*.line, *.column, &unknown_option_message(name)))]
    UnknownOption {
        name: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// An option holds a value of the wrong type or out of its range; the message names the
    /// option and its allowed values.
    #[error("{message}")]
    InvalidValue { option: String, message: String },
}

impl ScriptError {
    /// The 1-based line and column the error points at, when known.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::Syntax { line, column, .. } => Some((*line, *column)),
            Self::Runtime { line, column, .. }
            | Self::Limit { line, column, .. }
            | Self::UnknownOption { line, column, .. } => line.zip(*column),
            Self::InvalidValue { .. } => None,
        }
    }

    /// Appends which template, process and operator (when one was named) the script was run
    /// for to the message, so an error found by a save check names the branch that produced it.
    pub(crate) fn for_context(self, template: &str, process: &str, operator: &str) -> Self {
        let suffix = if operator.is_empty() {
            format!(" (template \"{template}\", process \"{process}\")")
        } else {
            format!(" (template \"{template}\", process \"{process}\", operator \"{operator}\")")
        };
        match self {
            Self::Runtime {
                line,
                column,
                message,
            } => Self::Runtime {
                line,
                column,
                message: message + suffix.as_str(),
            },
            Self::Limit {
                line,
                column,
                message,
            } => Self::Limit {
                line,
                column,
                message: message + suffix.as_str(),
            },
            Self::InvalidValue { option, message } => Self::InvalidValue {
                option,
                message: message + suffix.as_str(),
            },
            other @ (Self::Syntax { .. } | Self::UnknownOption { .. }) => other,
        }
    }
}

fn at(line: Option<usize>, column: Option<usize>, message: &str) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {message}"),
        (Some(line), None) => format!("line {line}: {message}"),
        _ => message.to_owned(),
    }
}

fn unknown_option_message(name: &str) -> String {
    if name.starts_with('_') {
        format!("`{name}` is not declared; declare a helper variable with `let {name} = ...;`")
    } else {
        format!(
            "`{name}` is not an option; the options are {}, and a helper variable's name must start with `_`",
            OPTION_NAMES.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lead_with_the_position_when_known() {
        let syntax = ScriptError::Syntax {
            line: 3,
            column: 17,
            message: "Expecting an expression".to_owned(),
        };
        assert_eq!(
            syntax.to_string(),
            "line 3, column 17: Expecting an expression"
        );
        assert_eq!(syntax.position(), Some((3, 17)));

        let runtime = ScriptError::Runtime {
            line: None,
            column: None,
            message: "Division by zero".to_owned(),
        };
        assert_eq!(runtime.to_string(), "Division by zero");
        assert_eq!(runtime.position(), None);

        let limit = ScriptError::Limit {
            line: Some(2),
            column: Some(1),
            message: "the script ran more than 100000 operations".to_owned(),
        };
        assert_eq!(
            limit.to_string(),
            "line 2, column 1: the script ran more than 100000 operations"
        );
        assert_eq!(limit.position(), Some((2, 1)));

        let invalid = ScriptError::InvalidValue {
            option: "pin_length".to_owned(),
            message: "pin_length must be 4 to 12 digits, got 3".to_owned(),
        };
        assert_eq!(
            invalid.to_string(),
            "pin_length must be 4 to 12 digits, got 3"
        );
        assert_eq!(invalid.position(), None);
    }

    #[test]
    fn an_unknown_option_lists_the_options() {
        let error = ScriptError::UnknownOption {
            name: "pin_lenght".to_owned(),
            line: Some(1),
            column: Some(5),
        };
        let text = error.to_string();
        assert!(
            text.starts_with("line 1, column 5: `pin_lenght` is not an option"),
            "{text}"
        );
        for option in OPTION_NAMES {
            assert!(text.contains(option), "{text}");
        }

        let helper = ScriptError::UnknownOption {
            name: "_days".to_owned(),
            line: None,
            column: None,
        };
        assert!(helper.to_string().contains("let _days"), "{helper}");
    }

    #[test]
    fn a_check_context_is_added_to_value_errors_only() {
        let invalid = ScriptError::InvalidValue {
            option: "validity_days".to_owned(),
            message: "validity_days must be 1 to 365 days, got 0".to_owned(),
        }
        .for_context("Visitor", "TempCardsProcAssign", "");
        assert_eq!(
            invalid.to_string(),
            "validity_days must be 1 to 365 days, got 0 (template \"Visitor\", process \"TempCardsProcAssign\")"
        );
        let unknown = ScriptError::UnknownOption {
            name: "x".to_owned(),
            line: None,
            column: None,
        };
        assert_eq!(unknown.clone().for_context("Visitor", "P", ""), unknown);
    }
}
