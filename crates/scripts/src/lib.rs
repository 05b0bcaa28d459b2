//! Cardwright's option scripts: the Rhai script in which a policy administrator sets the options
//! of the temporary card processes (PIN and PUK length, chip encoding and certificates, validity,
//! cards per person), possibly differently per template, process or operator.
//!
//! A [`ScriptEngine`] compiles a script once ([`ScriptEngine::compile`], or
//! [`ScriptEngine::check`] when it is saved) and evaluates the [`CompiledScript`] per process run
//! ([`ScriptEngine::evaluate`]) into validated [`ScriptOptions`]. Scripts run sandboxed under
//! [`ScriptLimits`]; every failure is a [`ScriptError`] with a line and column where one applies.

mod default_script;
mod engine;
mod error;
mod options;

pub use default_script::DEFAULT_SCRIPT;
pub use engine::{CompiledScript, ScriptEngine, ScriptLimits};
pub use error::ScriptError;
pub use options::{
    ScriptContext, ScriptOptions, CONTEXT_NAMES, MAIL_LANGUAGES, MAX_ACTIVE_PER_PERSON,
    MAX_CERTIFICATES, OPTION_NAMES, PIN_LENGTH, PUK_LENGTH, REMIND_DAYS_BEFORE, VALIDITY_DAYS,
};
