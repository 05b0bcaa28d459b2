//! The option script Cardwright ships with.

/// The shipped option script: sets every option to its default, explains each option and its
/// allowed values, and shows how to branch on the context.
///
/// Evaluating it gives [`crate::ScriptOptions::default`] for any context.
pub const DEFAULT_SCRIPT: &str = r#"// Options of the temporary card processes.
//
// This script runs every time a temporary card process runs. It can read:
//   template  - name of the card template, e.g. "Temporary card"
//   process   - the process being run, e.g. "TempCardsProcAssign" or "TempCardsProcExtend"
//               ("TempCardsSysRemind" when reminders are decided)
//   operator  - username of the operator running the process
// An option the script does not set keeps the value shown below.
// Variables of your own must have names starting with an underscore: let _days = 7;

// Length of the PIN set on the card: 4 to 12 digits.
pin_length = 6;

// Length of the PUK, the code that unblocks a blocked PIN: 8 to 16 digits.
puk_length = 8;

// Whether the chip is encoded when the card is issued: true or false.
encode = false;

// Certificates written to the chip, as a list of certificate profile names,
// e.g. ["authentication", "signature"]. Only used when encode is true, and then at least one
// is needed. Each name must be a configured certificate profile; at most 8, none twice.
certificates = ["authentication"];

// Days an assignment is valid, and days each extension adds: 1 to 365.
validity_days = 14;

// How many times one assignment may be extended: 0 to 50 (0: never).
max_extensions = 2;

// How many assigned temporary cards one person may hold at once: 1 to 10.
max_active_per_person = 1;

// Days before an assignment ends that its holder gets a reminder by mail: 0 to 30 (0: none).
remind_days_before = 2;

// The desk's mail address: it gets a copy of each reminder, and a notice when a card expires
// without being returned. "" for none.
desk_email = "";

// The language of the mails: "en" or "de".
mail_language = "en";

// What happens to the assigned temporary cards of a person who is deactivated (left the
// directory): "withdraw", "lock" or "keep".
on_person_deactivated = "lock";

// Example: visitor cards for one day, extensions by one week.
//
// if template == "Visitor" {
//     validity_days = 1;
// }
// if process == "TempCardsProcExtend" {
//     validity_days = 7;
// }
"#;
