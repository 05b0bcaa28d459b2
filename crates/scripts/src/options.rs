//! The options a script sets, their defaults and allowed values, and the context it reads.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use cardwright_domain::temp_cards::TempCardOptions;
use rhai::{Array, Dynamic, Scope, INT};

use crate::error::ScriptError;

/// The names of the options, in the order the default script sets them.
pub const OPTION_NAMES: [&str; 11] = [
    "pin_length",
    "puk_length",
    "encode",
    "certificates",
    "validity_days",
    "max_extensions",
    "max_active_per_person",
    "remind_days_before",
    "desk_email",
    "mail_language",
    "on_person_deactivated",
];

/// The names of the read-only context variables a script can branch on.
pub const CONTEXT_NAMES: [&str; 3] = ["template", "process", "operator"];

/// Allowed PIN lengths, in digits.
pub const PIN_LENGTH: RangeInclusive<u32> = 4..=12;
/// Allowed PUK lengths, in digits.
pub const PUK_LENGTH: RangeInclusive<u32> = 8..=16;
/// Allowed validity of an assignment or an extension, in days.
pub const VALIDITY_DAYS: RangeInclusive<u32> = 1..=365;
/// Allowed number of extensions of one assignment.
pub const MAX_EXTENSIONS: RangeInclusive<u32> = 0..=50;
/// Allowed number of assigned temporary cards one person may hold at once.
pub const MAX_ACTIVE_PER_PERSON: RangeInclusive<u32> = 1..=10;
/// Allowed days before the end of an assignment that its reminder is sent (0: none).
pub const REMIND_DAYS_BEFORE: RangeInclusive<u32> = 0..=30;
/// Languages mails can be written in.
pub const MAIL_LANGUAGES: [&str; 2] = ["en", "de"];
/// What happens to the assigned temporary cards of a person who is deactivated.
pub const ON_PERSON_DEACTIVATED: [&str; 3] = ["withdraw", "lock", "keep"];
/// The most certificate profiles one card may carry.
pub const MAX_CERTIFICATES: usize = 8;

/// The option values a script produces for one process run.
///
/// A value returned by [`crate::ScriptEngine::evaluate`] is always within the allowed ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Digits of the PIN set on the card (4..=12).
    pub pin_length: u32,
    /// Digits of the PUK that unblocks the PIN (8..=16).
    pub puk_length: u32,
    /// Whether the chip is encoded when the card is issued.
    pub encode: bool,
    /// Certificate profiles written to the chip when `encode` is true: configured profile
    /// names (checked whether or not `encode` is on), no repeats, at most 8, at least one when
    /// `encode` is true.
    pub certificates: Vec<String>,
    /// Days an assignment or an extension is valid for (1..=365).
    pub validity_days: u32,
    /// How many times one assignment may be extended (0..=50).
    pub max_extensions: u32,
    /// How many assigned temporary cards one person may hold at once (1..=10).
    pub max_active_per_person: u32,
    /// Days before an assignment ends that the holder (and the desk) get a reminder (0..=30; 0
    /// sends none).
    pub remind_days_before: u32,
    /// The desk's address: a copy of each reminder, and the notice of a card that expired
    /// without being returned. Empty: none.
    pub desk_email: String,
    /// The language of the mails ("en" or "de").
    pub mail_language: String,
    /// What happens to an assigned temporary card when its holder is deactivated (left the
    /// directory): "withdraw", "lock" or "keep".
    pub on_person_deactivated: String,
}

impl Default for ScriptOptions {
    /// The values an option keeps when the script does not set it.
    fn default() -> Self {
        Self {
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
    }
}

impl ScriptOptions {
    /// The options that assign and extend read.
    pub fn temp_card_options(&self) -> TempCardOptions {
        TempCardOptions {
            validity_days: self.validity_days,
            max_active_per_person: self.max_active_per_person,
        }
    }

    /// Puts the options into `scope` as the script's starting values.
    pub(crate) fn push_into(&self, scope: &mut Scope<'_>) {
        let certificates: Array = self
            .certificates
            .iter()
            .map(|name| Dynamic::from(name.clone()))
            .collect();
        scope
            .push("pin_length", INT::from(self.pin_length))
            .push("puk_length", INT::from(self.puk_length))
            .push("encode", self.encode)
            .push("certificates", certificates)
            .push("validity_days", INT::from(self.validity_days))
            .push("max_extensions", INT::from(self.max_extensions))
            .push(
                "max_active_per_person",
                INT::from(self.max_active_per_person),
            )
            .push("remind_days_before", INT::from(self.remind_days_before))
            .push("desk_email", self.desk_email.clone())
            .push("mail_language", self.mail_language.clone())
            .push("on_person_deactivated", self.on_person_deactivated.clone());
    }

    /// Reads and validates the options from the scope a script ran in.
    pub(crate) fn read_from(scope: &Scope<'_>, profiles: &[String]) -> Result<Self, ScriptError> {
        let pin_length = read_count(scope, "pin_length", &PIN_LENGTH, "digits")?;
        let puk_length = read_count(scope, "puk_length", &PUK_LENGTH, "digits")?;
        let encode = read_bool(scope, "encode")?;
        let certificates = read_certificates(scope, encode, profiles)?;
        let validity_days = read_count(scope, "validity_days", &VALIDITY_DAYS, "days")?;
        let max_extensions = read_count(scope, "max_extensions", &MAX_EXTENSIONS, "extensions")?;
        let max_active_per_person = read_count(
            scope,
            "max_active_per_person",
            &MAX_ACTIVE_PER_PERSON,
            "cards",
        )?;
        let remind_days_before =
            read_count(scope, "remind_days_before", &REMIND_DAYS_BEFORE, "days")?;
        let desk_email = read_email(scope, "desk_email")?;
        let mail_language = read_choice(scope, "mail_language", &MAIL_LANGUAGES)?;
        let on_person_deactivated =
            read_choice(scope, "on_person_deactivated", &ON_PERSON_DEACTIVATED)?;
        Ok(Self {
            pin_length,
            puk_length,
            encode,
            certificates,
            validity_days,
            max_extensions,
            max_active_per_person,
            remind_days_before,
            desk_email,
            mail_language,
            on_person_deactivated,
        })
    }
}

/// What a script sees of the process run it is evaluated for.
///
/// The script reads these as the string constants `template`, `process` and `operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptContext<'a> {
    /// Name of the card template, e.g. "Temporary card".
    pub template: &'a str,
    /// Symbolic name of the process, e.g. "TempCardsProcAssign".
    pub process: &'a str,
    /// Username of the operator running the process.
    pub operator: &'a str,
}

fn option_value<'s>(scope: &'s Scope<'_>, option: &str) -> Result<&'s Dynamic, ScriptError> {
    scope.get(option).ok_or_else(|| ScriptError::InvalidValue {
        option: option.to_owned(),
        message: format!("{option} has no value"),
    })
}

fn invalid(option: &str, message: String) -> ScriptError {
    ScriptError::InvalidValue {
        option: option.to_owned(),
        message,
    }
}

fn read_count(
    scope: &Scope<'_>,
    option: &str,
    range: &RangeInclusive<u32>,
    unit: &str,
) -> Result<u32, ScriptError> {
    let (min, max) = (range.start(), range.end());
    let value = option_value(scope, option)?;
    let Ok(number) = value.as_int() else {
        return Err(invalid(
            option,
            format!(
                "{option} must be a whole number, {min} to {max} {unit}, got {}",
                describe(value)
            ),
        ));
    };
    u32::try_from(number)
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                option,
                format!("{option} must be {min} to {max} {unit}, got {number}"),
            )
        })
}

fn read_bool(scope: &Scope<'_>, option: &str) -> Result<bool, ScriptError> {
    let value = option_value(scope, option)?;
    value.as_bool().map_err(|_| {
        invalid(
            option,
            format!("{option} must be true or false, got {}", describe(value)),
        )
    })
}

fn read_text(scope: &Scope<'_>, option: &str, what: &str) -> Result<String, ScriptError> {
    let value = option_value(scope, option)?;
    value
        .as_immutable_string_ref()
        .map(|text| text.as_str().to_owned())
        .map_err(|_| {
            invalid(
                option,
                format!("{option} must be {what}, got {}", describe(value)),
            )
        })
}

/// An email address or the empty text (none).
fn read_email(scope: &Scope<'_>, option: &str) -> Result<String, ScriptError> {
    let text = read_text(
        scope,
        option,
        "an email address in quotes, or \"\" for none",
    )?;
    match cardwright_domain::Email::parse_optional(&text) {
        Ok(Some(email)) => Ok(email.as_str().to_owned()),
        Ok(None) => Ok(String::new()),
        Err(e) => Err(invalid(option, format!("{option}: {e}"))),
    }
}

fn read_choice(scope: &Scope<'_>, option: &str, allowed: &[&str]) -> Result<String, ScriptError> {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    let what = format!("one of {}", quoted.join(", "));
    let text = read_text(scope, option, &what)?;
    if allowed.contains(&text.as_str()) {
        Ok(text)
    } else {
        Err(invalid(
            option,
            format!(
                "{option} must be {what}, got {}",
                describe(&Dynamic::from(text))
            ),
        ))
    }
}

fn read_certificates(
    scope: &Scope<'_>,
    encode: bool,
    profiles: &[String],
) -> Result<Vec<String>, ScriptError> {
    const OPTION: &str = "certificates";
    let value = option_value(scope, OPTION)?;
    let Ok(items) = value.as_array_ref() else {
        return Err(invalid(
            OPTION,
            format!(
                "certificates must be a list of certificate profile names such as [\"authentication\"], got {}",
                describe(value)
            ),
        ));
    };
    if items.len() > MAX_CERTIFICATES {
        return Err(invalid(
            OPTION,
            format!(
                "certificates may name at most {MAX_CERTIFICATES} certificate profiles, got {}",
                items.len()
            ),
        ));
    }
    let mut names = Vec::with_capacity(items.len());
    let mut seen = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let Ok(name) = item.as_immutable_string_ref() else {
            return Err(invalid(
                OPTION,
                format!(
                    "certificates must hold certificate profile names (text), got {} at position {}",
                    describe(item),
                    index + 1
                ),
            ));
        };
        let name = name.as_str().to_owned();
        if !seen.insert(name.clone()) {
            return Err(invalid(
                OPTION,
                format!("certificates names the profile \"{name}\" more than once"),
            ));
        }
        names.push(name);
    }
    if encode && names.is_empty() {
        return Err(invalid(
            OPTION,
            "certificates must name at least one certificate profile when encode is true"
                .to_owned(),
        ));
    }
    {
        if let Some(unknown) = names.iter().find(|name| !profiles.contains(name)) {
            let allowed = if profiles.is_empty() {
                "no certificate profile is configured".to_owned()
            } else {
                format!("the configured profiles are {}", profiles.join(", "))
            };
            return Err(invalid(
                OPTION,
                format!(
                    "certificates names \"{unknown}\", which is not a configured certificate profile; {allowed}"
                ),
            ));
        }
    }
    Ok(names)
}

/// A short description of a script value for an error message.
fn describe(value: &Dynamic) -> String {
    const MAX_SHOWN: usize = 40;
    if let Ok(text) = value.as_immutable_string_ref() {
        let shown: String = text.chars().take(MAX_SHOWN).collect();
        let ellipsis = if text.chars().count() > MAX_SHOWN {
            "..."
        } else {
            ""
        };
        format!("the text {shown:?}{ellipsis}")
    } else if let Ok(flag) = value.as_bool() {
        flag.to_string()
    } else if let Ok(number) = value.as_int() {
        format!("the whole number {number}")
    } else if value.is_float() {
        format!("the number {value}")
    } else if value.is_array() {
        "a list".to_owned()
    } else if value.is_map() {
        "an object map".to_owned()
    } else if value.is_unit() {
        "no value (())".to_owned()
    } else {
        format!("a value of type {}", value.type_name())
    }
}
