//! The values the API reads, each with the schema the OpenAPI document states for it. A value
//! that matches its schema is taken and one that does not is refused (with 400, or with 422 for
//! free text holding a character its rule forbids), so the patterns here follow the domain's
//! parsers character for character: they allow the surrounding spaces the parser trims, count
//! what is sent the way the parser does, and bar the characters it bars. Free text's patterns are
//! built from the same `TextRule` its parser reads. Patterns are ECMA-262, as JSON Schema reads
//! them.

use cardwright_domain::temp_cards::processes;
use std::borrow::Cow;
use std::fmt;

use cardwright_domain::batch_order::MAX_ORDER_CARDS;
use cardwright_domain::reason::COMMENT_RULE;
use cardwright_domain::temp_cards::OPTION_SCRIPT as SCRIPT_NAME;
use cardwright_domain::temp_cards::{CardState, OrderState};
use cardwright_domain::template::DESCRIPTION_RULE;
use cardwright_domain::{CardId, PersonName, PersonState, TemplateKind, TemplateName, TextRule};
use cardwright_processes::notify::mails::{BODY_RULE, SUBJECT_RULE};
use cardwright_processes::notify::webhooks::URL_RULE;
use cardwright_processes::stations::DESCRIPTION_RULE as STATION_DESCRIPTION_RULE;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// What `str::trim` removes: Unicode `White_Space`, control characters among them.
const SPACE: &str =
    r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// `White_Space` that is neither a control nor an invisible formatting character: the plain
/// spaces trimmed from around free text (`cardwright_domain::text::is_plain_space`).
const PLAIN_SPACE: &str = r"\u0020\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000";
/// What `char::is_control` is true for.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// The line breaks multi-line free text may hold (`cardwright_domain::text::is_line_break`).
const LINE_BREAKS: &str = r"\u000a\u000d";
/// The control characters without the line breaks.
const CONTROL_BUT_LINE_BREAKS: &str = r"\u0000-\u0009\u000b\u000c\u000e-\u001f\u007f-\u009f";

/// The invisible formatting characters the domain refuses in names besides control characters
/// (`cardwright_domain::text::HIDDEN`), as a character-class body.
fn hidden() -> String {
    cardwright_domain::text::HIDDEN
        .iter()
        .map(|(from, to)| {
            if from == to {
                format!("\\u{:04x}", u32::from(*from))
            } else {
                format!("\\u{:04x}-\\u{:04x}", u32::from(*from), u32::from(*to))
            }
        })
        .collect()
}

/// The written form of every id.
pub const ID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// A value that is `core` once the surrounding spaces are trimmed.
fn trimmed(core: &str) -> String {
    format!("^[{SPACE}]*{core}[{SPACE}]*$")
}

/// What [`cardwright_domain::FreeText::parse`] admits under `rule`: no character the rule bars,
/// anywhere, and (unless the field may be empty) one that is not trimmed. The length is the
/// schema's `maxLength`, counted as sent as the parser counts it.
fn free_text_pattern(rule: TextRule) -> String {
    let hidden = hidden();
    let (barred, trimmed) = if rule.lines {
        (
            format!("{CONTROL_BUT_LINE_BREAKS}{hidden}"),
            format!("{PLAIN_SPACE}{LINE_BREAKS}"),
        )
    } else {
        (format!("{CONTROL}{hidden}"), PLAIN_SPACE.to_owned())
    };
    if rule.may_be_empty {
        format!("^[^{barred}]*$")
    } else {
        format!("^[{trimmed}]*[^{CONTROL}{PLAIN_SPACE}{hidden}][^{barred}]*$")
    }
}

/// The schema of a free-text field: `what` it is, then the rule in words, the pattern and the
/// length.
fn free_text(rule: TextRule, what: &str) -> ObjectBuilder {
    let shape = if rule.lines { "Lines" } else { "One line" };
    let empty = if rule.may_be_empty {
        ", or empty"
    } else {
        ", not blank"
    };
    let trimmed = if rule.lines {
        "Plain spaces and line breaks"
    } else {
        "Plain spaces"
    };
    let control = if rule.lines {
        "control characters other than line breaks (LF, CR)"
    } else {
        "control characters (tabs, vertical tabs and line breaks among them)"
    };
    string(&format!(
        "{what} {shape} of at most {} characters, counted as sent{empty}. {trimmed} around \
         it are trimmed. It may not contain {control} or invisible formatting characters \
         (bidirectional controls U+202A to U+202E, U+2066 to U+2069, U+200E, U+200F and U+061C, \
         zero-width characters, line and paragraph separators) anywhere: such text is refused \
         with 422 and a message that names the field, never cleaned up.",
        rule.max_chars
    ))
    .max_length(Some(rule.max_chars))
    .pattern(Some(free_text_pattern(rule)))
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// A schema written by hand, for a value whose rule lives in a domain parser. The type only
/// names the schema (`#[schema(value_type = ...)]`); the value stays a `String` for the parser.
macro_rules! schema {
    ($(#[$doc:meta])* $name:ident, $title:literal, $build:expr) => {
        $(#[$doc])*
        pub enum $name {}

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build.into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($title)
            }
        }
    };
}

schema!(
    /// A person's given or family name (`PersonName`).
    PersonNameText,
    "PersonName",
    free_text(PersonName::RULE, "A given or family name.").examples(["Grace"])
);

schema!(
    /// An operator's username (`Username`).
    UsernameText,
    "Username",
    string("2 to 64 letters, digits, '.', '_', '-' or '@' once surrounding spaces are trimmed; compared without case.")
        .pattern(Some(trimmed("[A-Za-z0-9._@-]{2,64}")))
        .examples(["alice"])
);

schema!(
    /// A role (`Role`).
    RoleText,
    "Role",
    string("An operator's role.").enum_values(Some(cardwright_domain::Role::ALL.map(cardwright_domain::Role::as_str)))
);

schema!(
    /// An employee number (`EmployeeNumber`).
    EmployeeNumberText,
    "EmployeeNumber",
    string("1 to 32 letters, digits or dashes once surrounding spaces are trimmed; unique.")
        .pattern(Some(trimmed("[A-Za-z0-9-]{1,32}")))
        .examples(["E-1002"])
);

schema!(
    /// An optional email address (`Email::parse_optional`).
    EmailText,
    "Email",
    {
        let hidden = hidden();
        let part = format!("[^@{CONTROL}{PLAIN_SPACE}{hidden}]");
        let edge = format!("[^@.{CONTROL}{PLAIN_SPACE}{hidden}]");
        string(
            "`local@domain.tld` once surrounding spaces are trimmed, at most 254 characters in all; \
             empty or blank means none.",
        )
        .max_length(Some(cardwright_domain::Email::MAX_CHARS))
        .pattern(Some(trimmed(&format!(
            "(?:{part}+@{edge}{part}*\\.{part}*{edge})?"
        ))))
        .examples(["grace.hopper@example.com"])
    }
);

schema!(
    /// A card template's name (`TemplateName`).
    TemplateNameText,
    "TemplateName",
    free_text(TemplateName::RULE, "A template's name, unique.").examples(["Temporary card"])
);

/// A card template's description (`template::DESCRIPTION_RULE`), which may also be left out or
/// null: `#[schema(schema_with)]` of an optional field.
pub fn optional_template_description() -> ObjectBuilder {
    free_text(DESCRIPTION_RULE, "What the template is for.")
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .examples(["Spare badge for an employee who forgot theirs"])
}

schema!(
    /// A station's description (`stations::DESCRIPTION_RULE`).
    StationDescriptionText,
    "StationDescription",
    free_text(STATION_DESCRIPTION_RULE, "Where the station stands and what it has.")
        .examples(["front desk, hall B"])
);

/// A reason's comment (`reason::COMMENT_RULE`), which may also be left out or null:
/// `#[schema(schema_with)]` of an optional field.
pub fn optional_comment() -> ObjectBuilder {
    free_text(COMMENT_RULE, "Free text beside the reason.")
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .examples(["left on the train"])
}

schema!(
    /// A mail's subject (`mails::SUBJECT_RULE`).
    MailSubjectText,
    "MailSubject",
    free_text(SUBJECT_RULE, "The subject, with placeholders.")
        .examples(["Your temporary card {{serial}}"])
);

schema!(
    /// A mail's body (`mails::BODY_RULE`).
    MailBodyText,
    "MailBody",
    free_text(BODY_RULE, "The body, with placeholders.")
        .examples(["Hello {{holder}},\n\nplease bring {{serial}} back by {{valid_until}}."])
);

schema!(
    /// A webhook's URL (`webhooks::URL_RULE`, then `webhooks::check_url`).
    WebhookUrlText,
    "WebhookUrl",
    free_text(
        URL_RULE,
        "Where deliveries are POSTed: http or https, no user name or password, within the \
         configured allow-list (`webhooks.allowed_urls`); a URL the allow-list refuses is 422.",
    )
    .examples(["https://siem.example.com/cardwright"])
);

schema!(
    /// A card template's serial prefix (`SerialPrefix`).
    SerialPrefixText,
    "SerialPrefix",
    string("1 to 12 upper-case letters, digits or dashes once surrounding spaces are trimmed; unique.")
        .pattern(Some(trimmed("[A-Z0-9-]{1,12}")))
        .examples(["TMP-"])
);

schema!(
    /// A person's state (`PersonState`).
    PersonStateText,
    "PersonState",
    string("active or inactive.")
        .enum_values(Some([PersonState::Active, PersonState::Inactive].map(PersonState::as_str)))
);

schema!(
    /// A card template's kind (`TemplateKind`).
    TemplateKindText,
    "TemplateKind",
    string("The kind of card a template makes.")
        .enum_values(Some([TemplateKind::Temporary.as_str()]))
);

schema!(
    /// The batch order process (`ProcessName`), the only one a batch order runs.
    ProcessText,
    "BatchOrderProcess",
    string("The process a batch order runs.")
        .enum_values(Some([processes::ISSUE_MULTIPLE.as_str()]))
);

schema!(
    /// The option script's name, the only script there is.
    ScriptNameText,
    "ScriptName",
    string("The option script.").enum_values(Some([SCRIPT_NAME]))
);

schema!(
    /// A webhook event type (`EventType`).
    EventTypeText,
    "EventType",
    string("An event type a webhook can subscribe to.").enum_values(Some(
        cardwright_domain::temp_cards::EventType::ALL.map(cardwright_domain::temp_cards::EventType::as_str)
    ))
);

schema!(
    /// A mail Cardwright sends (`MailKind`).
    MailKindText,
    "MailKind",
    string("reminder: to the holder (and the desk) before the card's end; assigned: to the holder at assignment; expired: to the desk when an assigned card expired unreturned.")
        .enum_values(Some(cardwright_domain::temp_cards::MailKind::ALL.map(cardwright_domain::temp_cards::MailKind::as_str)))
);

schema!(
    /// A language mails are written in.
    LanguageText,
    "Language",
    string("A language mails are written in.")
        .enum_values(Some(cardwright_domain::temp_cards::Language::ALL.map(cardwright_domain::temp_cards::Language::as_str)))
);

schema!(
    /// A station's name (`stations::check_name`).
    StationNameText,
    "StationName",
    string("1 to 64 letters, digits, '.', '_' or '-'; unique.")
        .pattern(Some("^[A-Za-z0-9._-]{1,64}$"))
        .examples(["desk-7"])
);

/// Bytes of `media`, sent or answered as the body itself (not JSON).
fn binary(media: &str, description: &str) -> ObjectBuilder {
    string(description)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .content_media_type(media)
}

schema!(
    /// A PNG image as a body.
    PngImage,
    "PngImage",
    binary("image/png", "A PNG image.")
);

schema!(
    /// A JPEG image as a body.
    JpegImage,
    "JpegImage",
    binary("image/jpeg", "A JPEG image.")
);

/// An id as a request names it: a UUID in its written form.
#[derive(Debug, Clone)]
pub struct Id(pub String);

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        string("A UUID, lower case, with dashes.")
            .format(Some(SchemaFormat::Custom("uuid".to_owned())))
            .pattern(Some(ID_PATTERN))
            .examples(["01890a5d-ac96-774b-bcce-b302099a8057"])
            .into()
    }
}

impl ToSchema for Id {}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        // Every kind of id has the same written form; the card's parser checks it.
        match CardId::parse(&s) {
            Ok(_) => Ok(Self(s)),
            Err(_) => Err(de::Error::custom(format!(
                "'{s}' is not an id (a lower-case UUID with dashes)"
            ))),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A whole number as JSON Schema's `integer` has it: `3`, but also `3.0` or `3e0`, in a JSON
/// body or a query string alike.
struct WholeNumber(i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(n))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<WholeNumber, E> {
                i64::try_from(n)
                    .map(WholeNumber)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<WholeNumber, E> {
                whole(n)
                    .map(WholeNumber)
                    .ok_or_else(|| E::custom(format!("{n} is not a whole number of 64 bits")))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<WholeNumber, E> {
                parse_whole_number(s)
                    .map(WholeNumber)
                    .ok_or_else(|| E::custom(format!("'{s}' is not a whole number")))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// `n` as an `i64` when it has no fraction and fits.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn whole(n: f64) -> Option<i64> {
    // 2^63 is exact as an f64; every whole f64 below it and from -2^63 on fits in an i64.
    let bound = i64::MAX as f64;
    (n.fract() == 0.0 && n >= -bound && n < bound).then_some(n as i64)
}

/// A whole number written in a path or query: `3`, `3.0` or `3e0`.
pub fn parse_whole_number(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(whole))
}

/// `#[serde(deserialize_with)]` for an `i64` that JSON Schema calls `integer`.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    WholeNumber::deserialize(deserializer).map(|n| n.0)
}

/// `#[serde(default, deserialize_with)]` for an optional `integer`.
pub fn optional_whole_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Option::<WholeNumber>::deserialize(deserializer).map(|n| n.map(|n| n.0))
}

/// The cards a batch order step names: 1 to `MAX_ORDER_CARDS` ids, each once.
pub fn card_ids() -> ArrayBuilder {
    ArrayBuilder::new()
        .description(Some("Card ids, 1 to 1000, each once."))
        .items(Ref::from_schema_name(Id::name()))
        .min_items(Some(1))
        .max_items(Some(MAX_ORDER_CARDS))
        .unique_items(true)
}

/// A value named by one of a fixed list of words, read with the domain's own parser.
macro_rules! word {
    ($(#[$doc:meta])* $name:ident($inner:ty), $title:literal, $description:literal, $words:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub $inner);

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($description).enum_values(Some($words)).into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($title)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map(Self).map_err(de::Error::custom)
            }
        }
    };
}

word!(
    /// A card state in a search.
    CardStateParam(CardState),
    "CardState",
    "A card state.",
    CardState::all().iter().map(|s| s.as_str())
);

word!(
    /// A batch order state in a search.
    OrderStateParam(OrderState),
    "OrderState",
    "A batch order state.",
    OrderState::ALL.map(OrderState::as_str)
);

/// The side of a card a preview shows.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Front,
    Back,
}

impl From<Side> for cardwright_cardsdk::Side {
    fn from(side: Side) -> Self {
        match side {
            Side::Front => cardwright_cardsdk::Side::Front,
            Side::Back => cardwright_cardsdk::Side::Back,
        }
    }
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Front => "front",
            Side::Back => "back",
        }
    }
}

/// `?side=front|back` of the card and template previews.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// front (default) or back.
    pub side: Option<Side>,
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use cardwright_domain::reason::Reason;
    use cardwright_domain::{Email, EmployeeNumber, FreeText, SerialPrefix};
    use regex_automata::nfa::thompson::pikevm::PikeVM;

    use super::*;

    /// Whether the schema of `T` (its pattern and length) admits `value`.
    fn schema_admits<T: PartialSchema>(value: &str) -> bool {
        admits(T::schema(), value)
    }

    /// Whether `schema` (its pattern and length) admits `value`.
    fn admits(schema: impl Into<RefOr<Schema>>, value: &str) -> bool {
        let RefOr::T(Schema::Object(object)) = schema.into() else {
            panic!("an object schema");
        };
        let pattern = object.pattern.expect("a pattern");
        matches(&pattern, value)
            && object
                .max_length
                .is_none_or(|max| value.chars().count() <= max)
    }

    /// Whether `pattern` matches `value` (the patterns are anchored, so a search is a full match).
    fn matches(pattern: &str, value: &str) -> bool {
        let vm = PikeVM::new(pattern).expect("the pattern compiles");
        let mut cache = vm.create_cache();
        vm.is_match(&mut cache, value)
    }

    /// Values at every edge the parsers have: spaces they trim (control characters among them),
    /// control characters they bar, the length limits, and what lies just past each.
    fn samples() -> Vec<String> {
        let mut values: Vec<String> = [
            "",
            " ",
            "\t",
            "\u{85}",
            "\u{3000}",
            "a",
            " a",
            "a\t",
            "\u{85}a\u{a0}",
            "a b",
            "a\u{0}b",
            "a\u{7f}",
            "\u{1f}a",
            "a\u{9f}",
            "A-1",
            "TMP-",
            "tmp-",
            "E 1",
            "é",
            "\u{feff}",
            "\u{200b}a",
            "a@b.c",
            " a@b.c\n",
            "a@b",
            "a@.b",
            "a@b.",
            "a@b..c",
            "@b.c",
            "a@@b.c",
            "a@b@c.d",
            "a b@c.d",
            "a@b.c\u{0}",
            "x\u{2028}y",
            "\u{2028}a",
            "a\u{202e}b",
            "a\u{200d}b",
            "\u{ad}a",
            "a\u{2066}",
            "a\u{200b}@b.c",
            "\u{b}a",
            "a\u{b}",
            "\u{b}",
            "a\u{c}b",
            "\u{85}",
            "a\nb",
            "a\r\nb",
            "\na",
            "a\n",
            "\r\n",
            "\n \n",
            " \u{a0}a\u{3000} ",
            "\u{2000}",
            "\u{202a}a",
            "a\u{202c}",
            "a\u{2069}b",
            "\u{200e}a",
            "a\u{200f}",
            "a\u{61c}b",
            "a\u{2029}",
            "https://siem.example.com/cardwright",
            "{{serial}}",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for n in [
            11, 12, 13, 31, 32, 33, 63, 64, 65, 99, 100, 101, 199, 200, 201, 250, 254, 255, 499,
            500, 501, 1999, 2000, 2001, 7999, 8000, 8001,
        ] {
            values.push("A".repeat(n));
            values.push("é".repeat(n));
            values.push(format!(" {}\n", "1".repeat(n)));
            values.push(format!(" {} ", "1".repeat(n.saturating_sub(2))));
            values.push(format!("{}\r\n", "1".repeat(n.saturating_sub(2))));
            values.push(format!("{}@ex.org", "a".repeat(n.saturating_sub(7))));
            values.push(format!(" {}@ex.org", "a".repeat(n.saturating_sub(8))));
        }
        values
    }

    fn agree<T: PartialSchema>(parses: impl Fn(&str) -> bool) {
        agree_with(std::any::type_name::<T>(), T::schema, parses);
    }

    fn agree_with<S: Into<RefOr<Schema>>>(
        name: &str,
        schema: impl Fn() -> S,
        parses: impl Fn(&str) -> bool,
    ) {
        for value in samples() {
            assert_eq!(
                admits(schema(), &value),
                parses(&value),
                "{value:?} in the schema of {name}"
            );
        }
    }

    #[test]
    fn patterns_say_what_the_parsers_accept() {
        agree::<PersonNameText>(|s| PersonName::parse("given_name", s).is_ok());
        agree::<EmployeeNumberText>(|s| EmployeeNumber::parse(s).is_ok());
        agree::<TemplateNameText>(|s| TemplateName::parse(s).is_ok());
        agree::<SerialPrefixText>(|s| SerialPrefix::parse(s).is_ok());
        agree::<EmailText>(|s| Email::parse_optional(s).is_ok());
        agree::<StationNameText>(|s| cardwright_processes::stations::check_name(s).is_ok());
        agree_with(
            "TemplateBody.description",
            optional_template_description,
            |s| FreeText::parse("description", DESCRIPTION_RULE, s).is_ok(),
        );
        agree::<StationDescriptionText>(|s| {
            FreeText::parse("description", STATION_DESCRIPTION_RULE, s).is_ok()
        });
        agree_with("ReasonBody.comment", optional_comment, |s| {
            Reason::parse("lost", Some(s)).is_ok()
        });
        agree::<MailSubjectText>(|s| FreeText::parse("subject", SUBJECT_RULE, s).is_ok());
        agree::<MailBodyText>(|s| FreeText::parse("body", BODY_RULE, s).is_ok());
        agree::<WebhookUrlText>(|s| FreeText::parse("url", URL_RULE, s).is_ok());
        agree::<Id>(|s| CardId::parse(s).is_ok());
        let id = CardId::new(1_700_000_000_000, [9; 10]).to_string();
        assert!(schema_admits::<Id>(&id));
        assert!(!schema_admits::<Id>(&id.to_uppercase()));
    }

    /// The characters of a class spelled with `\u` escapes and ranges.
    fn class_chars(class: &str) -> HashSet<char> {
        fn escaped(s: &str) -> (char, &str) {
            let hex = s.strip_prefix(r"\u").expect("a \\u escape");
            let code = u32::from_str_radix(&hex[..4], 16).expect("four hex digits");
            (char::from_u32(code).expect("a character"), &hex[4..])
        }
        let mut chars = HashSet::new();
        let mut rest = class;
        while !rest.is_empty() {
            let (first, after) = escaped(rest);
            rest = if let Some(range) = after.strip_prefix('-') {
                let (last, after) = escaped(range);
                chars.extend(first..=last);
                after
            } else {
                chars.insert(first);
                after
            };
        }
        chars
    }

    #[test]
    fn the_classes_are_what_rust_trims_and_bars() {
        use cardwright_domain::text::{is_line_break, is_plain_space};
        let space = class_chars(SPACE);
        let plain = class_chars(PLAIN_SPACE);
        let control = class_chars(CONTROL);
        let line_breaks = class_chars(LINE_BREAKS);
        let control_but_line_breaks = class_chars(CONTROL_BUT_LINE_BREAKS);
        for c in '\0'..=char::MAX {
            assert_eq!(space.contains(&c), c.is_whitespace(), "{c:?}");
            assert_eq!(plain.contains(&c), is_plain_space(c), "{c:?}");
            assert_eq!(control.contains(&c), c.is_control(), "{c:?}");
            assert_eq!(line_breaks.contains(&c), is_line_break(c), "{c:?}");
            assert_eq!(
                control_but_line_breaks.contains(&c),
                c.is_control() && !is_line_break(c),
                "{c:?}"
            );
        }
    }

    /// Every character in and around the ranges the rules name, one at a time, at the start, in
    /// the middle and at the end of a text, under every kind of rule.
    #[test]
    fn free_text_patterns_agree_with_the_parser_on_every_special_character() {
        let rules = [
            TextRule::line(10),
            TextRule::line(10).or_empty(),
            TextRule::lines(10),
            TextRule::lines(10).or_empty(),
        ];
        let mut special: Vec<char> = ('\0'..='\u{a0}').collect();
        for (from, to) in cardwright_domain::text::HIDDEN {
            let before = char::from_u32(u32::from(from) - 1).unwrap();
            let after = char::from_u32(u32::from(to) + 1).unwrap();
            special.extend([before, after]);
            special.extend(from..=to);
        }
        special.extend(('\0'..=char::MAX).filter(|c| c.is_whitespace()));
        for rule in rules {
            let pattern = free_text_pattern(rule);
            for c in &special {
                for value in [
                    format!("{c}"),
                    format!("{c}ab"),
                    format!("a{c}b"),
                    format!("ab{c}"),
                ] {
                    assert_eq!(
                        matches(&pattern, &value),
                        FreeText::parse("field", rule, &value).is_ok(),
                        "{value:?} under {rule:?}"
                    );
                }
            }
        }
    }
}
