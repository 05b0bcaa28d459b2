//! What an administrator notices when saving and running option scripts.

use std::time::{Duration, Instant};

use cardwright_domain::temp_cards::TempCardOptions;
use cardwright_scripts::{
    CompiledScript, ScriptContext, ScriptEngine, ScriptError, ScriptLimits, ScriptOptions,
    DEFAULT_SCRIPT,
};

const ASSIGN: ScriptContext<'static> = ScriptContext {
    template: "Temporary card",
    process: "TempCardsProcAssign",
    operator: "officer",
};

fn engine() -> ScriptEngine {
    ScriptEngine::new(vec!["authentication".to_owned(), "signature".to_owned()])
}

fn run(source: &str) -> Result<ScriptOptions, ScriptError> {
    run_for(source, &ASSIGN)
}

fn run_for(source: &str, ctx: &ScriptContext<'_>) -> Result<ScriptOptions, ScriptError> {
    let engine = engine();
    let script = engine.compile(source)?;
    engine.evaluate(&script, ctx)
}

fn assert_invalid(source: &str, option: &str) -> String {
    match run(source) {
        Err(ScriptError::InvalidValue {
            option: named,
            message,
        }) => {
            assert_eq!(named, option, "{source}: {message}");
            assert!(message.contains(option), "{message}");
            message
        }
        other => panic!("{source}: expected InvalidValue for {option}, got {other:?}"),
    }
}

fn assert_limit(source: &str) -> ScriptError {
    let started = Instant::now();
    let result = run(source);
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(ScriptError::Limit { .. })),
        "{source}: {result:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "{source} took {elapsed:?}"
    );
    result.unwrap_err()
}

#[test]
fn the_default_script_gives_the_default_options() {
    let options = run(DEFAULT_SCRIPT).unwrap();
    assert_eq!(options, ScriptOptions::default());
    assert_eq!(
        options,
        ScriptOptions {
            pin_length: 6,
            puk_length: 8,
            encode: false,
            certificates: vec!["authentication".to_owned()],
            validity_days: 14,
            max_extensions: 2,
            max_active_per_person: 1,
            remind_days_before: 2,
            desk_email: String::new(),
            mail_language: "en".to_owned(),
            on_person_deactivated: "lock".to_owned(),
        }
    );
    assert_eq!(options.temp_card_options(), TempCardOptions::default());
}

#[test]
fn the_default_script_sets_every_option_and_explains_it() {
    for (option, allowed) in [
        ("pin_length = 6;", "4 to 12 digits"),
        ("puk_length = 8;", "8 to 16 digits"),
        ("encode = false;", "true or false"),
        (
            "certificates = [\"authentication\"];",
            "certificate profile",
        ),
        ("validity_days = 14;", "1 to 365"),
        ("max_active_per_person = 1;", "1 to 10"),
        ("remind_days_before = 2;", "0 to 30"),
        ("desk_email = \"\";", "\"\" for none"),
        ("mail_language = \"en\";", "\"en\" or \"de\""),
    ] {
        assert!(DEFAULT_SCRIPT.contains(option), "{option}");
        assert!(DEFAULT_SCRIPT.contains(allowed), "{allowed}");
    }
    assert!(DEFAULT_SCRIPT.contains("if template =="));
    assert!(DEFAULT_SCRIPT.contains("if process =="));
}

#[test]
fn the_default_script_is_accepted_by_a_save_check() {
    engine()
        .check(
            DEFAULT_SCRIPT,
            &["Temporary card", "Visitor"],
            &["TempCardsProcAssign", "TempCardsProcExtend"],
            &["alice"],
        )
        .unwrap();
}

#[test]
fn an_empty_script_keeps_the_defaults() {
    assert_eq!(run("").unwrap(), ScriptOptions::default());
    assert_eq!(run("// nothing\n").unwrap(), ScriptOptions::default());
}

#[test]
fn assigned_options_are_returned() {
    let options = run(r#"
        pin_length = 8;
        puk_length = 12;
        encode = true;
        certificates = ["authentication", "signature"];
        validity_days = 30;
        max_active_per_person = 2;
        remind_days_before = 0;
        desk_email = " desk@example.org ";
        mail_language = "de";
        on_person_deactivated = "withdraw";
    "#)
    .unwrap();
    assert_eq!(
        options,
        ScriptOptions {
            pin_length: 8,
            puk_length: 12,
            encode: true,
            certificates: vec!["authentication".to_owned(), "signature".to_owned()],
            validity_days: 30,
            max_extensions: 2,
            max_active_per_person: 2,
            remind_days_before: 0,
            desk_email: "desk@example.org".to_owned(),
            mail_language: "de".to_owned(),
            on_person_deactivated: "withdraw".to_owned(),
        }
    );
    assert_eq!(
        options.temp_card_options(),
        TempCardOptions {
            validity_days: 30,
            max_active_per_person: 2
        }
    );
}

#[test]
fn the_bounds_of_every_range_are_accepted() {
    let low = run("pin_length = 4; puk_length = 8; validity_days = 1; max_active_per_person = 1;")
        .unwrap();
    assert_eq!(
        (
            low.pin_length,
            low.puk_length,
            low.validity_days,
            low.max_active_per_person
        ),
        (4, 8, 1, 1)
    );
    let high =
        run("pin_length = 12; puk_length = 16; validity_days = 365; max_active_per_person = 10;")
            .unwrap();
    assert_eq!(
        (
            high.pin_length,
            high.puk_length,
            high.validity_days,
            high.max_active_per_person
        ),
        (12, 16, 365, 10)
    );
}

#[test]
fn a_syntax_error_names_its_line_and_column() {
    let error = run("pin_length = 6;\npuk_length = 8;\nvalidity_days = ;\n").unwrap_err();
    let ScriptError::Syntax { line, column, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*line, *column), (3, 17));
    assert_eq!(error.position(), Some((3, 17)));
    assert!(
        error.to_string().starts_with("line 3, column 17: "),
        "{error}"
    );
}

#[test]
fn an_unclosed_block_is_a_syntax_error() {
    let error = run("if template == \"Visitor\" {\n    validity_days = 5;\n").unwrap_err();
    assert!(matches!(error, ScriptError::Syntax { .. }), "{error:?}");
    assert!(error.position().is_some());
}

#[test]
fn endless_loops_are_stopped_quickly() {
    for source in ["loop {}", "while true {}", "let _i = 0; loop { _i += 1; }"] {
        let error = assert_limit(source);
        assert!(error.to_string().contains("operations") || error.to_string().contains("ms"));
    }
}

#[test]
fn a_slow_script_is_stopped_by_the_time_limit() {
    let limits = ScriptLimits {
        max_operations: u64::MAX,
        max_time: Duration::from_millis(20),
        ..ScriptLimits::default()
    };
    let engine = ScriptEngine::with_limits(vec![], limits);
    let script = engine.compile("loop {}").unwrap();
    let started = Instant::now();
    let error = engine.evaluate(&script, &ASSIGN).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let ScriptError::Limit { message, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(message.contains("longer than 20 ms"), "{message}");
}

#[test]
fn growing_values_are_stopped_by_the_size_limits() {
    let error = assert_limit(r#"let s = "x"; loop { s += s; }"#);
    assert!(
        error
            .to_string()
            .contains("string is longer than 4096 bytes"),
        "{error}"
    );
    let error = assert_limit("let _a = []; loop { _a.push(1); }");
    assert!(
        error.to_string().contains("list has more than 64 items"),
        "{error}"
    );
    let error = assert_limit("let _a = [1]; loop { _a = _a + _a; }");
    assert!(error.to_string().contains("list"), "{error}");
    let error = assert_limit(r#"let _s = "x"; _s.pad(1000000000, "y");"#);
    assert!(error.to_string().contains("string"), "{error}");
    let error = assert_limit("let _a = []; _a.pad(1000000000, 0);");
    assert!(error.to_string().contains("list"), "{error}");
}

#[test]
fn object_maps_are_not_available() {
    for source in ["let _m = #{};", "let _m = #{ a: 1 }; validity_days = _m.a;"] {
        let error = run(source).unwrap_err();
        assert!(
            matches!(error, ScriptError::Syntax { .. }),
            "{source}: {error:?}"
        );
    }
    let error = run(r#"let _m = parse_json("{}");"#).unwrap_err();
    assert!(matches!(error, ScriptError::Runtime { .. }), "{error:?}");
}

#[test]
fn a_script_cannot_wait() {
    for source in ["sleep(100);", "sleep(100.0);", r#"call(Fn("sleep"), 100);"#] {
        let started = Instant::now();
        let error = run(source).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{source}");
        assert!(
            matches!(error, ScriptError::Runtime { .. }),
            "{source}: {error:?}"
        );
    }
}

#[test]
fn deep_recursion_is_stopped() {
    let error = assert_limit("fn down(n) { down(n + 1) } down(0);");
    assert!(error.to_string().contains("levels deep"), "{error}");
}

#[test]
fn recursion_up_to_the_call_limit_works() {
    let options =
        run("fn depth(n) { if n == 0 { 0 } else { 1 + depth(n - 1) } } validity_days = depth(15);")
            .unwrap();
    assert_eq!(options.validity_days, 15);
}

#[test]
fn deeply_nested_expressions_are_refused() {
    let source = format!("validity_days = {}1{};", "(".repeat(200), ")".repeat(200));
    let error = run(&source).unwrap_err();
    assert!(matches!(error, ScriptError::Limit { .. }), "{error:?}");
    assert!(error.to_string().contains("nested"), "{error}");
}

#[test]
fn an_oversized_source_is_refused_before_parsing() {
    let source = format!("// {}\n", "x".repeat(70 * 1024));
    let error = run(&source).unwrap_err();
    let ScriptError::Limit { message, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(message.contains("bytes"), "{message}");
}

#[test]
fn modules_cannot_be_imported() {
    let error = run("import \"x\" as y;").unwrap_err();
    assert!(matches!(error, ScriptError::Syntax { .. }), "{error:?}");
    assert_eq!(error.position(), Some((1, 1)));
}

#[test]
fn eval_is_refused() {
    for source in [
        r#"eval("1");"#,
        r#"validity_days = eval("5");"#,
        r#"let _f = Fn("eval"); _f.call("validity_days = 5");"#,
        r#"call(Fn("eval"), "1");"#,
    ] {
        let result = run(source);
        assert!(result.is_err(), "{source}: {result:?}");
        assert!(
            !matches!(result, Err(ScriptError::InvalidValue { .. })),
            "{source}: {result:?}"
        );
    }
}

#[test]
fn print_and_debug_do_nothing() {
    // The script runs in a second run of this test binary whose output is not captured, so
    // anything `print` or `debug` wrote would show in what that run leaves on its streams.
    if std::env::var_os("SCRIPTS_PRINT_PROBE").is_some() {
        let options = run(
            r#"print("hello-from-a-script"); debug("debug-from-a-script"); validity_days = 3;"#,
        )
        .unwrap();
        assert_eq!(options.validity_days, 3);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "print_and_debug_do_nothing",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SCRIPTS_PRINT_PROBE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the script ran: {text}");
    assert!(!text.contains("from-a-script"), "a script wrote: {text}");
}

#[test]
fn the_clock_is_not_available() {
    assert!(run("let _t = timestamp();").is_err());
}

#[test]
fn a_misspelled_option_declared_with_let_is_refused() {
    let error = run("pin_length = 6;\nlet pin_lenght = 6;\n").unwrap_err();
    assert_eq!(
        error,
        ScriptError::UnknownOption {
            name: "pin_lenght".to_owned(),
            line: Some(2),
            column: Some(5),
        }
    );
    assert!(error.to_string().contains("pin_lenght"), "{error}");
    assert!(error.to_string().contains("pin_length"), "{error}");
}

#[test]
fn a_misspelled_option_assigned_without_let_is_refused() {
    let error = run("pin_length = 6;\npin_lenght = 6;\n").unwrap_err();
    assert_eq!(
        error,
        ScriptError::UnknownOption {
            name: "pin_lenght".to_owned(),
            line: Some(2),
            column: Some(1),
        }
    );
}

#[test]
fn a_misspelled_option_in_a_branch_is_refused_at_compile_time() {
    let engine = engine();
    let error = engine
        .compile("if template == \"Visitor\" {\n    validty_days = 5;\n}\n")
        .unwrap_err();
    assert!(
        matches!(&error, ScriptError::UnknownOption { name, .. } if name == "validty_days"),
        "{error:?}"
    );
    assert_eq!(error.position(), Some((2, 5)));
}

#[test]
fn helper_variables_starting_with_underscore_are_accepted() {
    let options = run("let _tmp = 3;\nvalidity_days = _tmp * 2;\nconst _MAX = 4;").unwrap();
    assert_eq!(options.validity_days, 6);
}

#[test]
fn variables_inside_blocks_and_functions_are_not_options() {
    let options = run(
        "fn days(t) { let d = 7; if t == \"Visitor\" { d = 1; } d }\n\
         if true { let local = 3; validity_days = local + days(template); }",
    )
    .unwrap();
    assert_eq!(options.validity_days, 10);
}

#[test]
fn out_of_range_values_are_refused() {
    let message = assert_invalid("pin_length = 3;", "pin_length");
    assert_eq!(message, "pin_length must be 4 to 12 digits, got 3");
    assert_invalid("pin_length = 13;", "pin_length");
    assert_invalid("pin_length = -6;", "pin_length");
    assert_invalid("puk_length = 7;", "puk_length");
    let message = assert_invalid("puk_length = 17;", "puk_length");
    assert!(message.contains("8 to 16 digits"), "{message}");
    let message = assert_invalid("validity_days = 0;", "validity_days");
    assert!(message.contains("1 to 365 days"), "{message}");
    assert_invalid("validity_days = 366;", "validity_days");
    assert_invalid("validity_days = 9223372036854775807;", "validity_days");
    let message = assert_invalid("max_active_per_person = 0;", "max_active_per_person");
    assert!(message.contains("1 to 10"), "{message}");
    assert_invalid("max_active_per_person = 11;", "max_active_per_person");
    assert_invalid("remind_days_before = 31;", "remind_days_before");
    assert_invalid("desk_email = \"desk\";", "desk_email");
    assert_invalid("desk_email = 7;", "desk_email");
    assert_invalid("mail_language = \"fr\";", "mail_language");
    assert_invalid(
        "on_person_deactivated = \"delete\";",
        "on_person_deactivated",
    );
}

#[test]
fn values_of_the_wrong_type_are_refused() {
    let message = assert_invalid("pin_length = \"6\";", "pin_length");
    assert!(message.contains("whole number"), "{message}");
    assert!(message.contains("\"6\""), "{message}");
    assert_invalid("pin_length = 6.0;", "pin_length");
    let message = assert_invalid("encode = 1;", "encode");
    assert!(message.contains("true or false"), "{message}");
    assert_invalid("encode = \"true\";", "encode");
    assert_invalid("validity_days = ();", "validity_days");
    assert_invalid("max_active_per_person = [1];", "max_active_per_person");
    let message = assert_invalid("certificates = \"authentication\";", "certificates");
    assert!(message.contains("list"), "{message}");
    assert_invalid("certificates = [1];", "certificates");
    assert_invalid("let pin_length = \"6\";", "pin_length");
}

#[test]
fn certificates_must_be_configured_profiles() {
    let message = assert_invalid(
        "encode = true; certificates = [\"authentication\", \"encryption\"];",
        "certificates",
    );
    assert!(message.contains("\"encryption\""), "{message}");
    assert!(message.contains("authentication, signature"), "{message}");
    assert_invalid(
        "encode = true; certificates = [\"signature\", \"signature\"];",
        "certificates",
    );
    assert_invalid(
        "certificates = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\"];",
        "certificates",
    );
}

#[test]
fn encoding_needs_at_least_one_certificate() {
    let message = assert_invalid("encode = true; certificates = [];", "certificates");
    assert!(message.contains("at least one"), "{message}");
    let options = run("encode = false; certificates = [];").unwrap();
    assert!(options.certificates.is_empty());
}

#[test]
fn certificate_names_are_checked_against_the_profiles_even_without_encoding() {
    let err = run("encode = false; certificates = [\"encryption\"];").unwrap_err();
    assert!(
        matches!(&err, ScriptError::InvalidValue { option, message } if option == "certificates" && message.contains("encryption")),
        "{err:?}"
    );
}

#[test]
fn scripts_branch_on_the_template() {
    let source = "if template == \"Visitor\" { validity_days = 5; } else { validity_days = 9; }";
    let visitor = ScriptContext {
        template: "Visitor",
        ..ASSIGN
    };
    assert_eq!(run_for(source, &visitor).unwrap().validity_days, 5);
    assert_eq!(run_for(source, &ASSIGN).unwrap().validity_days, 9);
}

#[test]
fn scripts_branch_on_the_process_and_the_operator() {
    let source = "if process == \"TempCardsProcExtend\" { validity_days = 7; }\n\
                  if operator == \"admin\" { max_active_per_person = 3; }";
    let extend = ScriptContext {
        process: "TempCardsProcExtend",
        ..ASSIGN
    };
    let options = run_for(source, &extend).unwrap();
    assert_eq!(
        (options.validity_days, options.max_active_per_person),
        (7, 1)
    );
    let admin = ScriptContext {
        operator: "admin",
        ..ASSIGN
    };
    let options = run_for(source, &admin).unwrap();
    assert_eq!(
        (options.validity_days, options.max_active_per_person),
        (14, 3)
    );
}

#[test]
fn one_compiled_script_serves_many_contexts() {
    let engine = engine();
    let script = engine.compile("validity_days = template.len();").unwrap();
    for template in ["abc", "Visitor", "Temporary card"] {
        let ctx = ScriptContext { template, ..ASSIGN };
        let options = engine.evaluate(&script, &ctx).unwrap();
        assert_eq!(options.validity_days as usize, template.len());
    }
}

#[test]
fn the_context_cannot_be_changed() {
    let error = run("template = \"Visitor\";").unwrap_err();
    assert!(matches!(error, ScriptError::Runtime { .. }), "{error:?}");
    assert!(error.to_string().contains("template"), "{error}");
}

#[test]
fn runtime_errors_carry_their_position() {
    let error = run("validity_days = 1;\nvalidity_days = 10 / 0;\n").unwrap_err();
    assert!(matches!(error, ScriptError::Runtime { .. }), "{error:?}");
    assert_eq!(error.position().map(|(line, _)| line), Some(2));
    let error = run("\n\nthrow \"no cards today\";").unwrap_err();
    assert!(error.to_string().contains("no cards today"), "{error}");
    assert_eq!(error.position().map(|(line, _)| line), Some(3));
}

#[test]
fn a_save_check_finds_a_bad_value_on_any_branch() {
    let engine = engine();
    let source = "if template == \"Visitor\" { validity_days = 0; }";
    engine
        .evaluate(&engine.compile(source).unwrap(), &ASSIGN)
        .unwrap();
    let error = engine
        .check(
            source,
            &["Temporary card", "Visitor"],
            &["TempCardsProcAssign", "TempCardsProcExtend"],
            &[],
        )
        .unwrap_err();
    let ScriptError::InvalidValue { option, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(option, "validity_days");
    assert!(message.contains("\"Visitor\""), "{message}");
    assert!(message.contains("TempCardsProcAssign"), "{message}");

    let source = "if process == \"TempCardsProcExtend\" { pin_length = 2; }";
    let error = engine
        .check(
            source,
            &["Temporary card"],
            &["TempCardsProcAssign", "TempCardsProcExtend"],
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(&error, ScriptError::InvalidValue { option, .. } if option == "pin_length"),
        "{error:?}"
    );
}

#[test]
fn a_save_check_runs_every_operator_branch() {
    let source = "if operator == \"mallory\" { validity_days = 0; }";
    let error = engine()
        .check(
            source,
            &["Temporary card"],
            &["TempCardsProcAssign"],
            &["alice", "mallory"],
        )
        .unwrap_err();
    let ScriptError::InvalidValue { option, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(option, "validity_days");
    assert!(message.contains("operator \"mallory\""), "{message}");
    engine()
        .check(
            source,
            &["Temporary card"],
            &["TempCardsProcAssign"],
            &["alice"],
        )
        .unwrap();
}

#[test]
fn a_save_check_returns_the_compiled_script() {
    let engine = engine();
    let script: CompiledScript = engine
        .check("validity_days = 3;", &["Temporary card"], &[], &[])
        .unwrap();
    assert_eq!(script.source(), "validity_days = 3;");
    assert_eq!(engine.evaluate(&script, &ASSIGN).unwrap().validity_days, 3);
}

#[test]
fn a_save_check_reports_syntax_errors_first() {
    let error = engine()
        .check(
            "validity_days = = 3;",
            &["Temporary card"],
            &["TempCardsProcAssign"],
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(error, ScriptError::Syntax { line: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn evaluation_is_fast() {
    let engine = engine();
    let script = engine.compile(DEFAULT_SCRIPT).unwrap();
    let runs = 200;
    let started = Instant::now();
    for _ in 0..runs {
        engine.evaluate(&script, &ASSIGN).unwrap();
    }
    let per_run = started.elapsed() / runs;
    // generous for unoptimised builds on a busy machine; release builds are far below
    assert!(per_run < Duration::from_millis(5), "{per_run:?}");
}

#[test]
fn engines_and_scripts_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    fn send_sync<T: Send + Sync>() {}
    shareable::<CompiledScript>();
    shareable::<ScriptError>();
    shareable::<ScriptOptions>();
    send_sync::<ScriptEngine>();

    let engine = std::sync::Arc::new(engine());
    let script = engine.compile("validity_days = template.len();").unwrap();
    let handles: Vec<_> = (1..=4)
        .map(|n| {
            let engine = std::sync::Arc::clone(&engine);
            let script = script.clone();
            std::thread::spawn(move || {
                let template = "x".repeat(n);
                let ctx = ScriptContext {
                    template: &template,
                    ..ASSIGN
                };
                engine.evaluate(&script, &ctx).unwrap().validity_days
            })
        })
        .collect();
    let days: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(days, vec![1, 2, 3, 4]);
}

/// The deepest script the limits allow: nesting as deep as accepted inside functions, recursing
/// as deep as the call limit allows, at the top of an expression nested as deep as accepted.
fn deepest_accepted_script(engine: &ScriptEngine) -> CompiledScript {
    let inner = (1..64)
        .rev()
        .map(|depth| {
            format!(
                "fn f(n) {{ if n <= 0 {{ 0 }} else {{ {}f(n - 1){} }} }}",
                "(".repeat(depth),
                ")".repeat(depth)
            )
        })
        .find(|function| engine.compile(function).is_ok())
        .unwrap();
    let levels = engine.limits().max_call_levels - 1;
    (1..64)
        .rev()
        .find_map(|depth| {
            let source = format!(
                "{inner}\nvalidity_days = {}f({levels}) + 1{};",
                "(".repeat(depth),
                ")".repeat(depth)
            );
            engine.compile(&source).ok()
        })
        .unwrap()
}

#[test]
fn the_deepest_accepted_script_runs_on_a_small_thread_stack() {
    let engine = engine();
    let script = deepest_accepted_script(&engine);
    let options = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || engine.evaluate(&script, &ASSIGN))
        .unwrap()
        .join()
        .expect("no stack overflow")
        .unwrap();
    assert_eq!(options.validity_days, 1);
}
