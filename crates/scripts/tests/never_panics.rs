//! Whatever an administrator types, compiling and evaluating answers with options or an error.

use cardwright_scripts::{
    ScriptContext, ScriptEngine, ScriptError, DEFAULT_SCRIPT, MAX_ACTIVE_PER_PERSON, PIN_LENGTH,
    PUK_LENGTH, VALIDITY_DAYS,
};
use proptest::prelude::*;

const CTX: ScriptContext<'static> = ScriptContext {
    template: "Temporary card",
    process: "TempCardsProcAssign",
    operator: "officer",
};

/// The message the engine gives when it caught a panic of its own: it must never be seen.
const ENGINE_FAILURE: &str = "the script engine failed on this script";

/// Compiles and evaluates `source`: each step answers with a script or options, or with an
/// error that names a problem of the script (never a caught panic, never an empty message), at
/// a position inside the source.
fn compile_and_evaluate(engine: &ScriptEngine, source: &str) {
    let lines = source.lines().count().max(1);
    let check = |error: &ScriptError| {
        let message = error.to_string();
        assert!(!message.trim().is_empty(), "an empty error for {source:?}");
        assert!(
            !message.contains(ENGINE_FAILURE),
            "the engine failed on {source:?}: {message}"
        );
        if let Some((line, _)) = error.position() {
            assert!(
                (1..=lines + 1).contains(&line),
                "line {line} of a {lines}-line script: {message}"
            );
        }
    };
    match engine.compile(source) {
        Ok(script) => match engine.evaluate(&script, &CTX) {
            Ok(options) => {
                assert!(PIN_LENGTH.contains(&options.pin_length), "{options:?}");
                assert!(PUK_LENGTH.contains(&options.puk_length), "{options:?}");
                assert!(
                    VALIDITY_DAYS.contains(&options.validity_days),
                    "{options:?}"
                );
                assert!(
                    MAX_ACTIVE_PER_PERSON.contains(&options.max_active_per_person),
                    "{options:?}"
                );
            }
            Err(error) => check(&error),
        },
        Err(error) => check(&error),
    }
}

/// Fragments of real scripts, so generated text reaches evaluation and not only the parser.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("pin_length = 6;".to_owned()),
        Just("encode = true;".to_owned()),
        Just("certificates = [\"authentication\"];".to_owned()),
        Just("if template == \"Visitor\" { validity_days = 5; }".to_owned()),
        Just("let _x = 3;".to_owned()),
        Just("loop { _x += 1; }".to_owned()),
        Just("fn f(n) { f(n) }".to_owned()),
        Just("validity_days = _x * 1000;".to_owned()),
        Just("max_active_per_person = [];".to_owned()),
        Just("let s = \"ab\"; s += s;".to_owned()),
        Just("}".to_owned()),
        "[a-z_ =;0-9\"\\[\\]{}()+*/-]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,300}") {
        let engine = ScriptEngine::new(vec!["authentication".to_owned()]);
        compile_and_evaluate(&engine, &source);
    }

    #[test]
    fn script_like_text_never_panics(parts in proptest::collection::vec(fragment(), 0..12)) {
        let engine = ScriptEngine::new(vec!["authentication".to_owned()]);
        compile_and_evaluate(&engine, &parts.join("\n"));
    }

    #[test]
    fn the_default_script_with_any_cut_never_panics(cut in 0..DEFAULT_SCRIPT.len()) {
        let engine = ScriptEngine::new(vec!["authentication".to_owned()]);
        let end = (0..=cut).rev().find(|&i| DEFAULT_SCRIPT.is_char_boundary(i)).unwrap_or(0);
        compile_and_evaluate(&engine, &DEFAULT_SCRIPT[..end]);
    }
}
