//! Mails: their texts (built in, in English and German, or changed by an admin), deciding them
//! (the assignment notice, the expiry notice, reminders) and recording how sending went.

use cardwright_domain::temp_cards::states;
use std::collections::HashMap;

use cardwright_domain::temp_cards::{EventType, Language, MailKind};
use cardwright_domain::{CardId, FreeText, Operator, PersonId, Role, TextRule, Timestamp};
use cardwright_storage::audit::{self, Event, NewEvent};
use cardwright_storage::mails::{self as rows, Mail, NewMail, StoredTemplate};
use cardwright_storage::{cards, persons, templates, Conn, Store};

use crate::services::scripts::RunOptions;
use crate::{require_any, Context, ProcessError};

/// The process name reminders are decided under, as the option script sees it.
pub const REMIND_PROCESS: &str = "TempCardsSysRemind";

/// The placeholders a message text may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "serial",
    "holder",
    "valid_until",
    "days",
    "desk_email",
    "template",
];

/// The most characters of a subject, and of a body.
pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 8000;

/// A message text: a subject and a body with `{{placeholders}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailText {
    pub kind: MailKind,
    pub language: Language,
    pub subject: String,
    pub body: String,
    /// Who changed it last and when; `None` for the built-in text.
    pub changed: Option<(String, Timestamp)>,
}

/// The built-in text of a mail.
pub fn builtin(kind: MailKind, language: Language) -> (&'static str, &'static str) {
    match (kind, language) {
        (MailKind::Reminder, Language::En) => (
            "Your temporary card {{serial}} ends on {{valid_until}}",
            "Hello {{holder}},\n\n\
             the temporary card {{serial}} you hold is valid until {{valid_until}}, \
             {{days}} day(s) from now.\n\n\
             Please bring it back to the security desk by then. If you still need it, ask the \
             desk to extend it before that date.\n\n\
             Your security desk\n",
        ),
        (MailKind::Reminder, Language::De) => (
            "Ihr temporärer Ausweis {{serial}} läuft am {{valid_until}} ab",
            "Hallo {{holder}},\n\n\
             der temporäre Ausweis {{serial}}, den Sie erhalten haben, ist bis {{valid_until}} \
             gültig, also noch {{days}} Tag(e).\n\n\
             Bitte geben Sie ihn bis dahin beim Sicherheitsdienst zurück. Wenn Sie ihn länger \
             brauchen, lassen Sie ihn vorher dort verlängern.\n\n\
             Ihr Sicherheitsdienst\n",
        ),
        (MailKind::Assigned, Language::En) => (
            "You hold temporary card {{serial}} until {{valid_until}}",
            "Hello {{holder}},\n\n\
             the security desk has given you the temporary card {{serial}}. It is valid until \
             {{valid_until}}.\n\n\
             Please bring it back to the desk as soon as you no longer need it, at the latest on \
             {{valid_until}}. If you lose it, tell the desk at once so that it can be locked.\n\n\
             Your security desk\n",
        ),
        (MailKind::Assigned, Language::De) => (
            "Sie haben den temporären Ausweis {{serial}} bis {{valid_until}}",
            "Hallo {{holder}},\n\n\
             der Sicherheitsdienst hat Ihnen den temporären Ausweis {{serial}} ausgegeben. Er ist \
             bis {{valid_until}} gültig.\n\n\
             Bitte geben Sie ihn zurück, sobald Sie ihn nicht mehr brauchen, spätestens am \
             {{valid_until}}. Wenn Sie ihn verlieren, melden Sie das bitte sofort, damit er \
             gesperrt werden kann.\n\n\
             Ihr Sicherheitsdienst\n",
        ),
        (MailKind::Expired, Language::En) => (
            "Temporary card {{serial}} expired without being returned",
            "The temporary card {{serial}} ({{template}}) held by {{holder}} expired on \
             {{valid_until}} and has not been returned.\n\n\
             It no longer opens doors. Please ask {{holder}} to bring it back, or lock it if it \
             is lost.\n",
        ),
        (MailKind::Expired, Language::De) => (
            "Temporärer Ausweis {{serial}} abgelaufen und nicht zurückgegeben",
            "Der temporäre Ausweis {{serial}} ({{template}}) von {{holder}} ist am \
             {{valid_until}} abgelaufen und wurde nicht zurückgegeben.\n\n\
             Er öffnet keine Türen mehr. Bitte fordern Sie ihn bei {{holder}} zurück, oder sperren \
             Sie ihn, wenn er verloren ist.\n",
        ),
    }
}

/// Every text in force: the built-in ones and those an admin changed.
pub async fn texts(ctx: &Context, operator: &Operator) -> Result<Vec<MailText>, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Reading the mail texts")?;
    let mut conn = ctx.store.reader().await?;
    let stored = rows::templates(&mut conn).await?;
    let mut all = Vec::new();
    for kind in MailKind::ALL {
        for language in Language::ALL {
            all.push(text_of(&stored, kind, language));
        }
    }
    Ok(all)
}

fn text_of(stored: &[StoredTemplate], kind: MailKind, language: Language) -> MailText {
    let changed = stored
        .iter()
        .find(|t| t.kind == kind.as_str() && t.language == language.as_str());
    if let Some(t) = changed {
        return MailText {
            kind,
            language,
            subject: t.subject.clone(),
            body: t.body.clone(),
            changed: Some((t.updated_by.clone(), t.updated_at)),
        };
    }
    let (subject, body) = builtin(kind, language);
    MailText {
        kind,
        language,
        subject: subject.to_owned(),
        body: body.to_owned(),
        changed: None,
    }
}

/// A subject: free text ([`cardwright_domain::text`]) of one line.
pub const SUBJECT_RULE: TextRule = TextRule::line(MAX_SUBJECT_CHARS);
/// A body: free text of any number of lines.
pub const BODY_RULE: TextRule = TextRule::lines(MAX_BODY_CHARS);

/// Checks a text: the rules of free text, then that only known placeholders are used. Returns
/// the subject and body as they are kept.
fn check_text(subject: &str, body: &str) -> Result<(String, String), ProcessError> {
    let subject = FreeText::parse("subject", SUBJECT_RULE, subject)?.into_string();
    let body = FreeText::parse("body", BODY_RULE, body)?.into_string();
    for (field, text) in [("subject", &subject), ("body", &body)] {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(ProcessError::Unprocessable(format!(
                    "{field}: a placeholder opened with {{{{ is not closed with }}}}"
                )));
            };
            let name = after[..end].trim();
            if !PLACEHOLDERS.contains(&name) {
                return Err(ProcessError::Unprocessable(format!(
                    "{field}: unknown placeholder {{{{{name}}}}}; known: {}",
                    PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
                )));
            }
            rest = &after[end + 2..];
        }
    }
    Ok((subject, body))
}

/// Saves an admin's text for one mail and language.
pub async fn put_text(
    ctx: &Context,
    operator: &Operator,
    kind: &str,
    language: &str,
    subject: &str,
    body: &str,
) -> Result<MailText, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Changing the mail texts")?;
    let kind: MailKind = kind.parse().map_err(not_found)?;
    let language: Language = language.parse().map_err(not_found)?;
    let (subject, body) = check_text(subject, body)?;
    let stored = StoredTemplate {
        kind: kind.as_str().to_owned(),
        language: language.as_str().to_owned(),
        subject,
        body,
        updated_at: ctx.now(),
        updated_by: operator.username.as_str().to_owned(),
    };
    let mut tx = ctx.store.begin().await?;
    rows::put_template(&mut tx, &stored).await?;
    audit::append(
        &mut tx,
        &ctx.audit_key,
        NewEvent::admin(
            ctx.now(),
            stored.updated_by.clone(),
            "MailTextChange",
            serde_json::json!({"kind": kind.as_str(), "language": language.as_str()}),
        ),
    )
    .await?;
    Store::commit(tx).await?;
    Ok(text_of(&[stored], kind, language))
}

/// Puts the built-in text of one mail and language back.
pub async fn reset_text(
    ctx: &Context,
    operator: &Operator,
    kind: &str,
    language: &str,
) -> Result<MailText, ProcessError> {
    require_any(operator, &[Role::PolicyAdmin], "Changing the mail texts")?;
    let kind: MailKind = kind.parse().map_err(not_found)?;
    let language: Language = language.parse().map_err(not_found)?;
    let mut tx = ctx.store.begin().await?;
    if rows::delete_template(&mut tx, kind.as_str(), language.as_str()).await? {
        audit::append(
            &mut tx,
            &ctx.audit_key,
            NewEvent::admin(
                ctx.now(),
                operator.username.as_str().to_owned(),
                "MailTextReset",
                serde_json::json!({"kind": kind.as_str(), "language": language.as_str()}),
            ),
        )
        .await?;
    }
    Store::commit(tx).await?;
    Ok(text_of(&[], kind, language))
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "used as map_err's function, which hands the error over"
)]
fn not_found(e: cardwright_domain::DomainError) -> ProcessError {
    ProcessError::NotFound(e.to_string())
}

/// The values a text's placeholders take.
struct Values {
    serial: String,
    holder: String,
    valid_until: Timestamp,
    now: Timestamp,
    desk_email: String,
    template: String,
}

fn format_date(t: Timestamp, language: Language) -> String {
    match language {
        Language::En => t.format("%-d %B %Y, %H:%M UTC").to_string(),
        Language::De => t.format("%d.%m.%Y, %H:%M UTC").to_string(),
    }
}

/// Fills a text's placeholders.
fn render(text: &str, values: &Values, language: Language) -> String {
    let days = (values.valid_until - values.now).num_seconds().max(0);
    let days = (days + 86_399) / 86_400;
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match after[..end].trim() {
            "serial" => out.push_str(&values.serial),
            "holder" => out.push_str(&values.holder),
            "valid_until" => out.push_str(&format_date(values.valid_until, language)),
            "days" => out.push_str(&days.to_string()),
            "desk_email" => out.push_str(&values.desk_email),
            "template" => out.push_str(&values.template),
            other => {
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Decides mails, with the texts and options read once per fan-out.
pub(crate) struct Composer<'c> {
    ctx: &'c Context,
    texts: Option<Vec<StoredTemplate>>,
    options: HashMap<(String, String, String), RunOptions>,
}

impl<'c> Composer<'c> {
    pub(crate) fn new(ctx: &'c Context) -> Self {
        Self {
            ctx,
            texts: None,
            options: HashMap::new(),
        }
    }

    async fn options(
        &mut self,
        conn: &mut Conn,
        template: &str,
        process: &str,
        operator: &str,
    ) -> Result<RunOptions, ProcessError> {
        let key = (template.to_owned(), process.to_owned(), operator.to_owned());
        if let Some(run) = self.options.get(&key) {
            return Ok(run.clone());
        }
        let run = self
            .ctx
            .scripts
            .for_run(conn, template, process, operator)
            .await?;
        self.options.insert(key, run.clone());
        Ok(run)
    }

    async fn text(
        &mut self,
        conn: &mut Conn,
        kind: MailKind,
        language: Language,
    ) -> Result<MailText, ProcessError> {
        if self.texts.is_none() {
            self.texts = Some(rows::templates(conn).await?);
        }
        Ok(text_of(
            self.texts.as_deref().unwrap_or(&[]),
            kind,
            language,
        ))
    }

    /// Writes the mail an event calls for, if any: the holder's notice of an assignment, the
    /// desk's notice of an assigned card that expired.
    pub(crate) async fn for_event(
        &mut self,
        conn: &mut Conn,
        event: &Event,
        kind: EventType,
    ) -> Result<(), ProcessError> {
        let (mail, process) = match kind {
            EventType::CardAssigned => (MailKind::Assigned, event.process.as_str()),
            EventType::CardExpired
                if event.old_state.as_deref() == Some(states::ASSIGNED.as_str()) =>
            {
                (MailKind::Expired, event.process.as_str())
            }
            _ => return Ok(()),
        };
        let Some(card) = event.card.as_deref() else {
            return Ok(());
        };
        let Some(record) = cards::get(&mut *conn, CardId::parse(card)?).await? else {
            return Ok(());
        };
        let details: serde_json::Value =
            serde_json::from_str(&event.details).unwrap_or(serde_json::Value::Null);
        let holder = match details["holder"].as_str().map(PersonId::parse) {
            Some(Ok(id)) => Some(id),
            _ => record.card.holder,
        };
        let person = match holder {
            Some(id) => persons::get(&mut *conn, id).await?,
            None => None,
        };
        let valid_until = details["valid_until"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .or(record.card.valid_until)
            .unwrap_or(event.at);
        let run = self
            .options(conn, &record.template_name, process, &event.operator)
            .await?;
        let language = run.options.mail_language.parse().unwrap_or_default();
        let desk = run.options.desk_email.clone();
        let (recipients, skipped) = match mail {
            MailKind::Assigned => match person.as_ref().and_then(|p| p.email.as_ref()) {
                Some(email) => (vec![email.as_str().to_owned()], None),
                None => (Vec::new(), Some("the holder has no email address")),
            },
            _ if desk.is_empty() => (Vec::new(), Some("the option desk_email is not set")),
            _ => (vec![desk.clone()], None),
        };
        let values = Values {
            serial: record.card.serial.as_str().to_owned(),
            holder: person.as_ref().map_or_else(
                || "(nobody)".to_owned(),
                cardwright_domain::Person::display_name,
            ),
            valid_until,
            now: event.at,
            desk_email: desk,
            template: record.template_name.clone(),
        };
        let text = self.text(conn, mail, language).await?;
        let dedupe_key = format!("{}:{}", mail.as_str(), event.seq);
        write(
            self.ctx,
            conn,
            mail,
            dedupe_key,
            Some(record.card.id),
            recipients,
            Vec::new(),
            &text,
            &values,
            language,
            skipped,
        )
        .await?;
        Ok(())
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "each argument is one fact of the mail"
)]
async fn write(
    ctx: &Context,
    conn: &mut Conn,
    kind: MailKind,
    dedupe_key: String,
    card: Option<CardId>,
    recipients: Vec<String>,
    copy_to: Vec<String>,
    text: &MailText,
    values: &Values,
    language: Language,
    skipped: Option<&str>,
) -> Result<bool, ProcessError> {
    let (millis, random) = ctx.id_parts();
    let now = ctx.now();
    let mail = NewMail {
        id: cardwright_domain::DeliveryId::new(millis, random).to_string(),
        dedupe_key,
        kind: kind.as_str().to_owned(),
        card,
        recipients,
        copy_to,
        subject: render(&text.subject, values, language),
        body: render(&text.body, values, language),
        created_at: now,
        give_up_at: ctx.notify.give_up_at(now),
        skipped: skipped.map(str::to_owned),
    };
    Ok(rows::insert(conn, &mail).await?)
}

/// Reminders decided per transaction.
const REMINDER_BATCH: i64 = 200;

/// Writes the reminders now due: for each template, the options (run as [`REMIND_PROCESS`] by
/// `system`) say how many days before the end of an assignment; each assigned card whose end is
/// that close gets one reminder per validity (an extension gets a new one). Returns how many.
pub async fn queue_reminders(ctx: &Context) -> Result<usize, ProcessError> {
    if !ctx.notify.mail {
        return Ok(0);
    }
    let now = ctx.now();
    let mut written = 0;
    let mut tx = ctx.store.begin().await?;
    let mut composer = Composer::new(ctx);
    for template in templates::list(&mut tx).await? {
        let name = template.name.as_str().to_owned();
        let run = composer
            .options(&mut tx, &name, REMIND_PROCESS, "system")
            .await?;
        let days = run.options.remind_days_before;
        if days == 0 {
            continue;
        }
        let until = now + chrono::Duration::days(i64::from(days));
        let language = run.options.mail_language.parse().unwrap_or_default();
        let desk = run.options.desk_email.clone();
        let text = composer.text(&mut tx, MailKind::Reminder, language).await?;
        let due = rows::reminders_due(
            &mut tx,
            &template.id.to_string(),
            now,
            until,
            REMINDER_BATCH,
        )
        .await?;
        for reminder in due {
            let copy_to: Vec<String> = if desk.is_empty() {
                Vec::new()
            } else {
                vec![desk.clone()]
            };
            let (recipients, copy_to, skipped) = match reminder.email.clone() {
                Some(email) => (vec![email], copy_to, None),
                None if !copy_to.is_empty() => (copy_to, Vec::new(), None),
                None => (
                    Vec::new(),
                    Vec::new(),
                    Some("the holder has no email address and desk_email is not set"),
                ),
            };
            let values = Values {
                serial: reminder.serial.clone(),
                holder: format!("{} {}", reminder.given_name, reminder.family_name),
                valid_until: reminder.valid_until,
                now,
                desk_email: desk.clone(),
                template: name.clone(),
            };
            if write(
                ctx,
                &mut tx,
                MailKind::Reminder,
                rows::reminder_key(reminder.card, reminder.valid_until),
                Some(reminder.card),
                recipients,
                copy_to,
                &text,
                &values,
                language,
                skipped,
            )
            .await?
            {
                written += 1;
            }
        }
    }
    Store::commit(tx).await?;
    Ok(written)
}

/// Claims mails due for sending for `claimer`.
pub async fn claim(ctx: &Context, claimer: &str, limit: i64) -> Result<Vec<Mail>, ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let taken = rows::claim(
        &mut tx,
        ctx.store.dialect(),
        now,
        ctx.notify.lease_until(now),
        claimer,
        limit,
    )
    .await?;
    Store::commit(tx).await?;
    Ok(taken)
}

/// Records a mail the SMTP server accepted.
pub async fn sent(ctx: &Context, mail: &Mail, claimer: &str) -> Result<(), ProcessError> {
    let mut tx = ctx.store.begin().await?;
    rows::mark_sent(&mut tx, &mail.id, claimer, ctx.now()).await?;
    Store::commit(tx).await?;
    Ok(())
}

/// Records a failed attempt; the mail is tried again later, or given up after its last chance.
pub async fn failed(
    ctx: &Context,
    mail: &Mail,
    claimer: &str,
    error: &str,
    permanent: bool,
) -> Result<(), ProcessError> {
    let retry = if permanent {
        None
    } else {
        ctx.notify
            .retry_at(ctx.now(), mail.attempts + 1, mail.give_up_at)
    };
    let mut tx = ctx.store.begin().await?;
    rows::mark_failed(&mut tx, &mail.id, claimer, error, retry).await?;
    Store::commit(tx).await?;
    Ok(())
}

/// The newest mails, for admins.
pub async fn recent(
    ctx: &Context,
    operator: &Operator,
    limit: i64,
) -> Result<Vec<Mail>, ProcessError> {
    require_any(
        operator,
        &[Role::PolicyAdmin, Role::ServiceAdmin],
        "Reading the mail log",
    )?;
    let mut conn = ctx.store.reader().await?;
    Ok(rows::recent(&mut conn, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_text_uses_known_placeholders_only() {
        for kind in MailKind::ALL {
            for language in Language::ALL {
                let (subject, body) = builtin(kind, language);
                check_text(subject, body).unwrap();
            }
        }
    }

    #[test]
    fn texts_with_unknown_or_open_placeholders_are_refused() {
        assert!(check_text("Card {{serial}}", "Hi {{name}}")
            .unwrap_err()
            .to_string()
            .contains("unknown placeholder {{name}}"));
        assert!(check_text("Card {{serial", "x").is_err());
        assert!(check_text("a\nb", "x").is_err());
        assert!(check_text("", "x").is_err());
        assert!(check_text("\u{b}Card", "x").is_err());
        assert!(check_text("Card", "x\u{202E}y").is_err());
    }

    #[test]
    fn placeholders_are_filled() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-10T17:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let values = Values {
            serial: "TMP-000007".into(),
            holder: "Grace Hopper".into(),
            valid_until: at,
            now: at - chrono::Duration::hours(30),
            desk_email: "desk@example.org".into(),
            template: "Temporary card".into(),
        };
        assert_eq!(
            render(
                "{{serial}} {{ holder }} {{valid_until}} {{days}}",
                &values,
                Language::En
            ),
            "TMP-000007 Grace Hopper 10 December 2026, 17:00 UTC 2"
        );
        assert_eq!(
            render("{{valid_until}}", &values, Language::De),
            "10.12.2026, 17:00 UTC"
        );
    }
}
