//! The sandboxed engine that compiles option scripts and evaluates them per process run.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMathPackage,
    BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    Dynamic, Engine, EvalAltResult, ImmutableString, ParseError, ParseErrorType, Position, Scope,
    AST,
};

use crate::error::ScriptError;
use crate::options::{ScriptContext, ScriptOptions, CONTEXT_NAMES, OPTION_NAMES};

/// The sandbox limits a script runs under.
///
/// No limit can be switched off: a zero is raised to the smallest workable value (one, one
/// millisecond, or room for the options and the context variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Longest source accepted, in bytes.
    pub max_source_bytes: usize,
    /// Most operations one evaluation may run.
    pub max_operations: u64,
    /// Longest wall-clock time one evaluation may run.
    pub max_time: Duration,
    /// Deepest nesting of function calls.
    pub max_call_levels: usize,
    /// Deepest nesting of statements and expressions at the top level.
    pub max_expr_depth: usize,
    /// Deepest nesting of statements and expressions inside functions.
    pub max_function_expr_depth: usize,
    /// Longest string, in bytes (the strings held in one list count together).
    pub max_string_bytes: usize,
    /// Most items of a list (nested lists count together).
    pub max_array_len: usize,
    /// Most variables alive at once, the options and the context included.
    pub max_variables: usize,
    /// Most functions a script may define.
    pub max_functions: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_source_bytes: 64 * 1024,
            max_operations: 100_000,
            max_time: Duration::from_millis(50),
            max_call_levels: 16,
            max_expr_depth: 32,
            max_function_expr_depth: 16,
            max_string_bytes: 4096,
            max_array_len: 64,
            max_variables: 128,
            max_functions: 32,
        }
    }
}

/// A compiled script, ready to be evaluated for many process runs.
///
/// Cheap to clone and shareable between threads: compile once when the script is saved or
/// loaded, keep it cached, and evaluate it per process run.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    ast: Arc<AST>,
    source: Arc<str>,
}

impl CompiledScript {
    /// The source the script was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

thread_local! {
    /// When the evaluation running on this thread must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets this thread's evaluation deadline and restores the previous one when dropped.
struct DeadlineGuard(Option<Instant>);

impl DeadlineGuard {
    fn set(deadline: Option<Instant>) -> Self {
        Self(DEADLINE.replace(deadline))
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.set(self.0);
    }
}

/// How often, in operations, the wall-clock deadline is checked.
const DEADLINE_CHECK_EVERY: u64 = 32;

/// Size limit of object maps, which scripts have no way to build; set all the same.
const MAX_MAP_LEN: usize = 16;

/// Compiles and evaluates option scripts in a sandbox.
///
/// Scripts cannot import modules, call `eval`, wait, read the clock, build object maps, or
/// reach files or the network; `print` and `debug` do nothing. Every compilation and
/// evaluation is bounded by [`ScriptLimits`], and neither panics: any failure is a
/// [`ScriptError`].
pub struct ScriptEngine {
    engine: Engine,
    certificate_profiles: Vec<String>,
    limits: ScriptLimits,
}

impl fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("certificate_profiles", &self.certificate_profiles)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ScriptEngine {
    /// An engine with the default limits that accepts the given certificate profile names.
    pub fn new(certificate_profiles: Vec<String>) -> Self {
        Self::with_limits(certificate_profiles, ScriptLimits::default())
    }

    /// An engine with the given limits that accepts the given certificate profile names.
    pub fn with_limits(certificate_profiles: Vec<String>, limits: ScriptLimits) -> Self {
        let limits = ScriptLimits {
            max_source_bytes: limits.max_source_bytes.max(1),
            max_operations: limits.max_operations.max(1),
            max_time: limits.max_time.max(Duration::from_millis(1)),
            max_call_levels: limits.max_call_levels.max(1),
            max_expr_depth: limits.max_expr_depth.max(1),
            max_function_expr_depth: limits.max_function_expr_depth.max(1),
            max_string_bytes: limits.max_string_bytes.max(1),
            max_array_len: limits.max_array_len.max(1),
            max_variables: limits
                .max_variables
                .max(CONTEXT_NAMES.len() + OPTION_NAMES.len()),
            max_functions: limits.max_functions.max(1),
        };
        Self {
            engine: sandboxed_engine(&limits),
            certificate_profiles,
            limits,
        }
    }

    /// The certificate profile names the `certificates` option may use.
    pub fn certificate_profiles(&self) -> &[String] {
        &self.certificate_profiles
    }

    /// The limits every compilation and evaluation runs under.
    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    /// Parses a script.
    ///
    /// A parse error is [`ScriptError::Syntax`] with its line and column; assigning to or reading
    /// a name that is neither an option, a context variable nor a declared variable is
    /// [`ScriptError::UnknownOption`]; a source longer than the limit, or nested too deeply, is
    /// [`ScriptError::Limit`].
    pub fn compile(&self, source: &str) -> Result<CompiledScript, ScriptError> {
        if source.len() > self.limits.max_source_bytes {
            return Err(ScriptError::Limit {
                line: None,
                column: None,
                message: format!(
                    "the script is {} bytes long; at most {} bytes are allowed",
                    source.len(),
                    self.limits.max_source_bytes
                ),
            });
        }
        // Every name the script may use without declaring it; values are placeholders, and
        // none is a constant so the optimizer cannot fold a context value into the script.
        let mut known = Scope::new();
        for name in CONTEXT_NAMES.iter().chain(OPTION_NAMES.iter()) {
            known.push_dynamic(*name, Dynamic::UNIT);
        }
        let compiled = catch_unwind(AssertUnwindSafe(|| {
            self.engine.compile_with_scope(&known, source)
        }));
        match compiled {
            Ok(Ok(ast)) => Ok(CompiledScript {
                ast: Arc::new(ast),
                source: Arc::from(source),
            }),
            Ok(Err(error)) => Err(self.parse_error(&error, source)),
            Err(_) => Err(engine_failure()),
        }
    }

    /// Runs a compiled script for one process run and validates every option it leaves.
    ///
    /// Options the script does not set keep their defaults ([`ScriptOptions::default`]).
    pub fn evaluate(
        &self,
        script: &CompiledScript,
        ctx: &ScriptContext<'_>,
    ) -> Result<ScriptOptions, ScriptError> {
        catch_unwind(AssertUnwindSafe(|| self.evaluate_unguarded(script, ctx)))
            .unwrap_or_else(|_| Err(engine_failure()))
    }

    /// What saving a script runs: compiles it, then evaluates it for every template name with
    /// every process name and every operator's username, so a bad value on any branch is found
    /// before the script is stored.
    ///
    /// An empty list is checked as one empty name; the operators are also checked with the
    /// empty name, which stands for an operator added later. The first error is returned; a
    /// runtime, limit or value error names the template and process it occurred for, and the
    /// operator when it is one of theirs.
    pub fn check(
        &self,
        source: &str,
        templates: &[&str],
        processes: &[&str],
        operators: &[&str],
    ) -> Result<CompiledScript, ScriptError> {
        let script = self.compile(source)?;
        let mut operator_names = vec![""];
        operator_names.extend(operators.iter().copied().filter(|o| !o.is_empty()));
        let templates = if templates.is_empty() {
            &[""][..]
        } else {
            templates
        };
        let processes = if processes.is_empty() {
            &[""][..]
        } else {
            processes
        };
        for operator in &operator_names {
            for template in templates {
                for process in processes {
                    let ctx = ScriptContext {
                        template,
                        process,
                        operator,
                    };
                    self.evaluate(&script, &ctx)
                        .map_err(|error| error.for_context(template, process, operator))?;
                }
            }
        }
        Ok(script)
    }

    fn evaluate_unguarded(
        &self,
        script: &CompiledScript,
        ctx: &ScriptContext<'_>,
    ) -> Result<ScriptOptions, ScriptError> {
        let mut scope = Scope::new();
        scope
            .push_constant("template", ImmutableString::from(ctx.template))
            .push_constant("process", ImmutableString::from(ctx.process))
            .push_constant("operator", ImmutableString::from(ctx.operator));
        ScriptOptions::default().push_into(&mut scope);
        let preset = scope.len();

        let result = {
            let _deadline = DeadlineGuard::set(Instant::now().checked_add(self.limits.max_time));
            self.engine.run_ast_with_scope(&mut scope, &script.ast)
        };
        if let Err(error) = result {
            return Err(self.eval_error(&error));
        }

        if let Some((name, ..)) = scope
            .iter()
            .skip(preset)
            .find(|(name, ..)| !name.starts_with('_') && !OPTION_NAMES.contains(name))
        {
            let position = find_declaration(&script.source, name);
            return Err(ScriptError::UnknownOption {
                name: name.to_owned(),
                line: position.map(|(line, _)| line),
                column: position.map(|(_, column)| column),
            });
        }
        ScriptOptions::read_from(&scope, &self.certificate_profiles)
    }

    fn parse_error(&self, error: &ParseError, source: &str) -> ScriptError {
        let (line, column) = parse_position(error.position(), source);
        match error.err_type() {
            ParseErrorType::VariableUndefined(name) => ScriptError::UnknownOption {
                name: name.clone(),
                line: Some(line),
                column: Some(column),
            },
            ParseErrorType::ExprTooDeep => ScriptError::Limit {
                line: Some(line),
                column: Some(column),
                message: format!(
                    "statements and expressions are nested more than {} levels deep ({} inside functions)",
                    self.limits.max_expr_depth, self.limits.max_function_expr_depth
                ),
            },
            ParseErrorType::TooManyFunctions => ScriptError::Limit {
                line: Some(line),
                column: Some(column),
                message: format!(
                    "the script defines more than {} functions",
                    self.limits.max_functions
                ),
            },
            other @ ParseErrorType::LiteralTooLarge(..) => ScriptError::Limit {
                line: Some(line),
                column: Some(column),
                message: other.to_string(),
            },
            other => ScriptError::Syntax {
                line,
                column,
                message: other.to_string(),
            },
        }
    }

    fn eval_error(&self, error: &EvalAltResult) -> ScriptError {
        let inner = error.unwrap_inner();
        let position = if inner.position().is_none() {
            error.position()
        } else {
            inner.position()
        };
        let (line, column) = (position.line(), position.position());
        let limit = |message: String| ScriptError::Limit {
            line,
            column,
            message,
        };
        match inner {
            EvalAltResult::ErrorVariableNotFound(name, _) if !is_predeclared(name) => {
                ScriptError::UnknownOption {
                    name: name.clone(),
                    line,
                    column,
                }
            }
            EvalAltResult::ErrorVariableNotFound(name, _) => ScriptError::Runtime {
                line,
                column,
                message: format!(
                    "`{name}` cannot be used inside a function; pass it as a parameter"
                ),
            },
            EvalAltResult::ErrorTooManyOperations(_) => limit(format!(
                "the script ran more than {} operations",
                self.limits.max_operations
            )),
            EvalAltResult::ErrorTerminated(..) => limit(format!(
                "the script ran longer than {} ms",
                self.limits.max_time.as_millis()
            )),
            EvalAltResult::ErrorStackOverflow(_) => limit(format!(
                "functions are called more than {} levels deep",
                self.limits.max_call_levels
            )),
            EvalAltResult::ErrorTooManyVariables(_) => limit(format!(
                "more than {} variables are alive at once",
                self.limits.max_variables
            )),
            EvalAltResult::ErrorTooManyModules(_) => {
                limit("the script may not load modules".to_owned())
            }
            EvalAltResult::ErrorDataTooLarge(what, _) => limit(match what.as_str() {
                "Length of string" => format!(
                    "a string is longer than {} bytes",
                    self.limits.max_string_bytes
                ),
                "Size of array/BLOB" => {
                    format!("a list has more than {} items", self.limits.max_array_len)
                }
                "Size of object map" => {
                    format!("an object map has more than {MAX_MAP_LEN} entries")
                }
                other => format!("{other} is over its limit"),
            }),
            other => ScriptError::Runtime {
                line,
                column,
                message: without_position(other),
            },
        }
    }
}

/// The rhai engine with the given limits, offering arithmetic, logic, strings, lists, ranges,
/// math and function pointers, and nothing that waits, prints, reads the clock, loads modules,
/// evaluates text as code or builds object maps.
fn sandboxed_engine(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new_raw();
    // Not rhai's StandardPackage: its language core offers `sleep`, `parse_json` (which builds
    // object maps) and function metadata.
    for package in [
        ArithmeticPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
        BasicFnPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(package);
    }
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.disable_symbol("eval");
    // Inserting into an object map by index is not size-checked, so maps are not offered.
    engine.disable_symbol("#{");
    engine.set_strict_variables(true);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth);
    engine.set_max_string_size(limits.max_string_bytes);
    engine.set_max_array_size(limits.max_array_len);
    engine.set_max_map_size(MAX_MAP_LEN);
    engine.set_max_variables(limits.max_variables);
    engine.set_max_functions(limits.max_functions);
    engine.on_progress(|operations| {
        if operations % DEADLINE_CHECK_EVERY != 0 {
            return None;
        }
        let expired = DEADLINE
            .get()
            .is_some_and(|deadline| Instant::now() >= deadline);
        expired.then_some(Dynamic::UNIT)
    });
    engine
}

fn engine_failure() -> ScriptError {
    ScriptError::Runtime {
        line: None,
        column: None,
        message: "the script engine failed on this script".to_owned(),
    }
}

fn is_predeclared(name: &str) -> bool {
    CONTEXT_NAMES.contains(&name) || OPTION_NAMES.contains(&name)
}

/// A parse error's line and column; an error without a position points after the last
/// character.
fn parse_position(position: Position, source: &str) -> (usize, usize) {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => (line, column),
        (Some(line), None) => (line, 1),
        _ => {
            let last = source.lines().last().unwrap_or("");
            (
                source.lines().count().max(1),
                last.chars().count().saturating_add(1),
            )
        }
    }
}

/// An evaluation error's message without the position rhai appends.
fn without_position(error: &EvalAltResult) -> String {
    let text = error.to_string();
    let position = error.position();
    if position.is_none() {
        return text;
    }
    let suffix = format!(" ({position})");
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// Where `name` is declared with `let` or `const`, as 1-based line and column of the name.
fn find_declaration(source: &str, name: &str) -> Option<(usize, usize)> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let ends_with_keyword = |text: &str, keyword: &str| {
        text.strip_suffix(keyword)
            .is_some_and(|before| before.chars().next_back().is_none_or(|c| !is_ident(c)))
    };
    if name.is_empty() {
        return None;
    }
    for (index, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut from = 0;
        while let Some(found) = code[from..].find(name) {
            let start = from + found;
            let end = start + name.len();
            let separate = code[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !is_ident(c))
                && code[end..].chars().next().is_none_or(|c| !is_ident(c));
            let before = code[..start].trim_end();
            if separate
                && before.len() < code[..start].len()
                && (ends_with_keyword(before, "let") || ends_with_keyword(before, "const"))
            {
                return Some((index + 1, code[..start].chars().count() + 1));
            }
            from = end;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_is_found_by_its_name() {
        let source = "pin_length = 6;\n  let pin_lenght = 6; // let x = 1\nconst  _y = 2;";
        assert_eq!(find_declaration(source, "pin_lenght"), Some((2, 7)));
        assert_eq!(find_declaration(source, "_y"), Some((3, 8)));
        assert_eq!(find_declaration(source, "x"), None);
        assert_eq!(find_declaration("let pin_lengths = 1;", "pin_length"), None);
        assert_eq!(find_declaration("outlet x = 1;", "x"), None);
        assert_eq!(
            find_declaration("let äx = 1; let x = 2;", "x"),
            Some((1, 17))
        );
        assert_eq!(find_declaration("let x", ""), None);
    }

    #[test]
    fn a_parse_error_without_position_points_after_the_end() {
        assert_eq!(parse_position(Position::NONE, "a = 1;\nb = ("), (2, 6));
        assert_eq!(parse_position(Position::NONE, ""), (1, 1));
    }

    #[test]
    fn zero_limits_are_raised_to_one() {
        let zero = ScriptLimits {
            max_source_bytes: 0,
            max_operations: 0,
            max_time: Duration::ZERO,
            max_call_levels: 0,
            max_expr_depth: 0,
            max_function_expr_depth: 0,
            max_string_bytes: 0,
            max_array_len: 0,
            max_variables: 0,
            max_functions: 0,
        };
        let engine = ScriptEngine::with_limits(Vec::new(), zero);
        let limits = engine.limits();
        assert_eq!(limits.max_operations, 1);
        assert_eq!(limits.max_string_bytes, 1);
        assert_eq!(limits.max_time, Duration::from_millis(1));
        assert_eq!(
            limits.max_variables,
            crate::options::OPTION_NAMES.len() + crate::options::CONTEXT_NAMES.len()
        );
        assert!(matches!(
            engine.compile("loop {}"),
            Err(ScriptError::Limit { .. })
        ));
    }

    #[test]
    fn the_deadline_is_restored_after_an_evaluation() {
        let outer = Instant::now() + Duration::from_secs(30);
        let _guard = DeadlineGuard::set(Some(outer));
        let engine = ScriptEngine::new(vec!["authentication".to_owned()]);
        let script = engine.compile("validity_days = 2;").unwrap();
        let ctx = ScriptContext {
            template: "",
            process: "",
            operator: "",
        };
        engine.evaluate(&script, &ctx).unwrap();
        assert_eq!(DEADLINE.get(), Some(outer));
    }
}
