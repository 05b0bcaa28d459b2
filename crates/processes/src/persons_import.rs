//! Persons from a CSV file (the organisation's HR or directory export), matched by employee
//! number: a dry run says what would be created, updated and deactivated, with the line of
//! each bad row; then either every row goes in or, as the operator chooses, only the good ones.
//! A person who left (state `inactive`, or missing from the file when asked) is deactivated,
//! never deleted, and their assigned temporary cards are handled as the option script's
//! `on_person_deactivated` says, by the card processes themselves.

use cardwright_domain::temp_cards::states;
use std::collections::{HashMap, HashSet};

use cardwright_domain::{
    Email, EmployeeNumber, Operator, Person, PersonId, PersonName, PersonState, Role,
};
use cardwright_storage::audit::{self, NewEvent};
use cardwright_storage::cards::{self, CardFilter};
use cardwright_storage::photos::{self, PhotoSource, StoredPhoto};
use cardwright_storage::{persons, Store};

use crate::{require_any, Context, ProcessError};

/// The most rows one file may have.
pub const MAX_ROWS: usize = 50_000;
/// The most bytes one file may have.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Only report what would happen.
    pub dry_run: bool,
    /// Import the good rows even when some are bad (otherwise a bad row stops the import).
    pub skip_bad_rows: bool,
    /// Deactivate active persons the file does not name (the file is the whole directory).
    pub deactivate_missing: bool,
}

/// A row that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The line in the file (1 is the header).
    pub line: u64,
    pub message: String,
}

/// What a card of a deactivated person became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAction {
    pub serial: String,
    /// `withdrawn`, `locked`, `kept`, or why it could not be done.
    pub outcome: String,
}

/// What an import did, or would do.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Whether the changes were written.
    pub applied: bool,
    /// Employee numbers.
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deactivated: Vec<String>,
    pub unchanged: usize,
    pub bad_rows: Vec<BadRow>,
    pub cards: Vec<CardAction>,
    /// Employee numbers of persons whose photo the directory set or changed.
    pub photos_set: Vec<String>,
    /// Employee numbers of persons whose directory photo is gone.
    pub photos_removed: Vec<String>,
}

/// A directory entry's photo, with the entry's line and employee number.
struct EntryPhoto {
    line: u64,
    number: String,
    bytes: Option<Vec<u8>>,
}

/// What a sync does to a person's photo.
enum PhotoChange {
    Set(crate::photos::Photo),
    Remove,
}

/// A row read and checked.
struct Row {
    employee_number: EmployeeNumber,
    given_name: PersonName,
    family_name: PersonName,
    email: Option<Email>,
    state: PersonState,
}

/// Which column holds what; header names are matched without case, with the directory's names
/// as aliases.
struct Columns {
    employee_number: usize,
    given_name: usize,
    family_name: usize,
    email: Option<usize>,
    state: Option<usize>,
}

fn columns(header: &csv::StringRecord) -> Result<Columns, ProcessError> {
    let find = |names: &[&str]| {
        header.iter().position(|h| {
            let h = h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase();
            names.contains(&h.as_str())
        })
    };
    let need = |names: &[&str]| {
        find(names).ok_or_else(|| {
            ProcessError::Invalid(format!(
                "line 1: the header has no column {}; it needs employee_number, given_name and \
                 family_name (email and state may follow)",
                names[0]
            ))
        })
    };
    Ok(Columns {
        employee_number: need(&["employee_number", "employeenumber"])?,
        given_name: need(&["given_name", "givenname"])?,
        family_name: need(&["family_name", "sn", "surname"])?,
        email: find(&["email", "mail"]),
        state: find(&["state"]),
    })
}

fn read_row(record: &csv::StringRecord, c: &Columns) -> Result<Row, String> {
    let field = |i: usize| record.get(i).unwrap_or_default();
    let state = match c.state.map(field).map(str::trim) {
        None | Some("") => PersonState::Active,
        Some(s) => s
            .parse()
            .map_err(|e: cardwright_domain::DomainError| e.to_string())?,
    };
    Ok(Row {
        employee_number: EmployeeNumber::parse(field(c.employee_number))
            .map_err(|e| e.to_string())?,
        given_name: PersonName::parse("given_name", field(c.given_name))
            .map_err(|e| e.to_string())?,
        family_name: PersonName::parse("family_name", field(c.family_name))
            .map_err(|e| e.to_string())?,
        email: c
            .email
            .map(|i| Email::parse_optional(field(i)))
            .transpose()
            .map_err(|e| e.to_string())?
            .flatten(),
        state,
    })
}

/// The rows of a file: the good ones, and the bad ones with their lines.
struct FileRows {
    good: Vec<Row>,
    bad: Vec<BadRow>,
    /// Employee numbers (lower case) of bad rows: those persons are not missing.
    named_by_bad: HashSet<String>,
}

/// Reads the file.
fn read(text: &str) -> Result<FileRows, ProcessError> {
    if text.len() > MAX_BYTES {
        return Err(ProcessError::Invalid(format!(
            "the file has more than {MAX_BYTES} bytes"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| ProcessError::Invalid(format!("line 1: the header cannot be read: {e}")))?
        .clone();
    let cols = columns(&header)?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (n, record) in reader.records().enumerate() {
        if n >= MAX_ROWS {
            return Err(ProcessError::Invalid(format!(
                "the file has more than {MAX_ROWS} rows"
            )));
        }
        let (line, result) = match record {
            Ok(record) => {
                let line = record.position().map_or(0, csv::Position::line);
                (line, read_row(&record, &cols))
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                (line, Err(format!("the row cannot be read: {e}")))
            }
        };
        match result {
            Ok(row) => {
                let key = row.employee_number.as_str().to_ascii_lowercase();
                if let Some(first) = seen.insert(key, line) {
                    bad.push(BadRow {
                        line,
                        message: format!(
                            "employee number {} is on line {first} already",
                            row.employee_number.as_str()
                        ),
                    });
                } else {
                    good.push(row);
                }
            }
            Err(message) => bad.push(BadRow { line, message }),
        }
    }
    Ok(FileRows {
        good,
        bad,
        named_by_bad: HashSet::new(),
    })
}

/// A file's bytes as text: UTF-8 (a byte order mark is allowed), else an error naming the first
/// line that is not, and how to fix it.
pub fn decode(bytes: &[u8]) -> Result<&str, ProcessError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.split(|b| *b == b'\n').count();
        ProcessError::Invalid(format!(
            "line {line}: the file is not UTF-8 text (byte {} is not); save it as UTF-8 (CSV \
             UTF-8) and import it again",
            e.valid_up_to() + 1
        ))
    })
}

/// Imports persons from CSV text. Needs registration-officer.
pub async fn import(
    ctx: &Context,
    operator: &Operator,
    text: &str,
    options: ImportOptions,
) -> Result<ImportReport, ProcessError> {
    require_any(operator, &[Role::RegistrationOfficer], "Importing persons")?;
    let rows = read(text)?;
    apply(ctx, operator, rows, options, "import", HashMap::new()).await
}

/// Compares the rows with the stored persons and, unless it is a dry run or bad rows stop it,
/// writes the changes in one transaction with their audit events (`source` names where the
/// rows came from), then handles the cards of the persons deactivated.
async fn apply(
    ctx: &Context,
    operator: &Operator,
    rows: FileRows,
    options: ImportOptions,
    source: &str,
    photo_changes: HashMap<String, PhotoChange>,
) -> Result<ImportReport, ProcessError> {
    let now = ctx.now();
    let mut tx = ctx.store.begin().await?;
    let existing = persons::all(&mut tx).await?;
    let mut report = ImportReport {
        dry_run: options.dry_run,
        bad_rows: rows.bad,
        ..ImportReport::default()
    };
    let writes = plan(
        ctx,
        &existing,
        rows.good,
        &rows.named_by_bad,
        options,
        &mut report,
    );
    if options.dry_run || (!report.bad_rows.is_empty() && !options.skip_bad_rows) {
        return Ok(report);
    }
    let mut events = Vec::with_capacity(writes.len() + photo_changes.len() + 1);
    let deactivated: HashSet<&str> = report.deactivated.iter().map(String::as_str).collect();
    // Each person by employee number (lower case): their id and employee number as written.
    let people: HashMap<String, (PersonId, String)> = existing
        .iter()
        .chain(writes.iter().map(|(p, _)| p))
        .map(|p| {
            (
                p.employee_number.as_str().to_ascii_lowercase(),
                (p.id, p.employee_number.as_str().to_owned()),
            )
        })
        .collect();
    let mut leaving = Vec::new();
    for (person, new) in &writes {
        if *new {
            persons::insert(&mut tx, person, now).await?;
        } else {
            persons::update(&mut tx, person, now).await?;
        }
        let number = person.employee_number.as_str();
        let what = if *new {
            "PersonCreate"
        } else if deactivated.contains(number) {
            leaving.push(person.id);
            "PersonDeactivate"
        } else {
            "PersonUpdate"
        };
        events.push(NewEvent::admin(
            now,
            operator.username.as_str().to_owned(),
            what,
            serde_json::json!({
                "person": person.id.to_string(),
                "employee_number": number,
                "source": source,
            }),
        ));
    }
    events.extend(
        write_photos(
            &mut tx,
            &people,
            photo_changes,
            (now, operator, source),
            &mut report,
        )
        .await?,
    );
    events.push(NewEvent::admin(
        now,
        operator.username.as_str().to_owned(),
        if source == "directory" {
            "PersonsSync"
        } else {
            "PersonsImport"
        },
        serde_json::json!({
            "created": report.created.len(),
            "updated": report.updated.len(),
            "deactivated": report.deactivated.len(),
            "unchanged": report.unchanged,
            "bad_rows": report.bad_rows.len(),
            "photos_set": report.photos_set.len(),
            "photos_removed": report.photos_removed.len(),
        }),
    ));
    audit::append_all(&mut tx, &ctx.audit_key, events).await?;
    Store::commit(tx).await?;
    report.applied = true;
    report.cards = handle_cards_of(ctx, operator, &leaving).await?;
    Ok(report)
}

/// Writes the photo changes of a sync (`people` gives each employee number's person), counting
/// them into `report`; returns their audit events.
async fn write_photos(
    tx: &mut cardwright_storage::Tx,
    people: &HashMap<String, (PersonId, String)>,
    changes: HashMap<String, PhotoChange>,
    (now, operator, source): (cardwright_domain::Timestamp, &Operator, &str),
    report: &mut ImportReport,
) -> Result<Vec<NewEvent>, ProcessError> {
    let mut changes: Vec<(String, PhotoChange)> = changes.into_iter().collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut events = Vec::with_capacity(changes.len());
    for (key, change) in changes {
        let Some((person, number)) = people.get(&key) else {
            continue;
        };
        let person = *person;
        let (what, details) = match change {
            PhotoChange::Set(photo) => {
                photos::put(
                    tx,
                    person,
                    &StoredPhoto {
                        jpeg: photo.jpeg,
                        width: photo.width,
                        height: photo.height,
                        source: PhotoSource::Directory,
                        source_sha256: photo.source_sha256,
                    },
                    now,
                )
                .await?;
                report.photos_set.push(number.clone());
                (
                    "PersonPhotoSet",
                    serde_json::json!({
                        "person": person.to_string(),
                        "employee_number": number,
                        "source": source,
                        "width": photo.width,
                        "height": photo.height,
                    }),
                )
            }
            PhotoChange::Remove => {
                photos::delete(tx, person).await?;
                report.photos_removed.push(number.clone());
                (
                    "PersonPhotoRemove",
                    serde_json::json!({
                        "person": person.to_string(),
                        "employee_number": number,
                        "source": source,
                    }),
                )
            }
        };
        events.push(NewEvent::admin(
            now,
            operator.username.as_str().to_owned(),
            what,
            details,
        ));
    }
    Ok(events)
}

/// One person as the directory gives it: attribute values by their role, and where it came
/// from (its DN) for messages.
#[derive(Debug, Clone, Default)]
pub struct DirectoryEntry {
    pub origin: String,
    pub employee_number: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    /// The photo attribute's bytes (JPEG or PNG), as received.
    pub photo: Option<Vec<u8>>,
}

/// Brings the persons in line with the directory: entries are matched by employee number,
/// persons the directory no longer has are deactivated (never deleted) and their cards handled
/// as `on_person_deactivated` says. An entry that cannot be read is reported and leaves its
/// person as it was. One audit event (`PersonsSync`) carries the counts.
pub async fn sync(
    ctx: &Context,
    operator: &Operator,
    entries: Vec<DirectoryEntry>,
) -> Result<ImportReport, ProcessError> {
    let mut rows = FileRows {
        good: Vec::new(),
        bad: Vec::new(),
        named_by_bad: HashSet::new(),
    };
    let mut seen = HashSet::new();
    let mut photo_bytes: Vec<EntryPhoto> = Vec::new();
    for (n, entry) in entries.into_iter().enumerate() {
        let line = u64::try_from(n + 1).unwrap_or(u64::MAX);
        let number = entry.employee_number.clone().unwrap_or_default();
        let read = (|| {
            Ok::<Row, String>(Row {
                employee_number: EmployeeNumber::parse(&number).map_err(|e| e.to_string())?,
                given_name: PersonName::parse(
                    "given_name",
                    entry.given_name.as_deref().unwrap_or_default(),
                )
                .map_err(|e| e.to_string())?,
                family_name: PersonName::parse(
                    "family_name",
                    entry.family_name.as_deref().unwrap_or_default(),
                )
                .map_err(|e| e.to_string())?,
                email: entry
                    .email
                    .as_deref()
                    .map(Email::parse_optional)
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .flatten(),
                state: PersonState::Active,
            })
        })();
        match read {
            Ok(row) if !seen.insert(row.employee_number.as_str().to_ascii_lowercase()) => {
                rows.bad.push(BadRow {
                    line,
                    message: format!(
                        "{}: employee number {} is given by another entry too",
                        entry.origin,
                        row.employee_number.as_str()
                    ),
                });
            }
            Ok(row) => {
                photo_bytes.push(EntryPhoto {
                    line,
                    number: row.employee_number.as_str().to_owned(),
                    bytes: entry.photo,
                });
                rows.good.push(row);
            }
            Err(message) => {
                if !number.trim().is_empty() {
                    rows.named_by_bad.insert(number.trim().to_ascii_lowercase());
                }
                rows.bad.push(BadRow {
                    line,
                    message: format!("{}: {message}", entry.origin),
                });
            }
        }
    }
    // A directory that answers with nobody is a wrong base or filter far more often than an
    // organisation that let everyone go.
    if rows.good.is_empty() && rows.bad.is_empty() {
        return Err(ProcessError::Conflict(
            "the directory gave no person; nothing changed (check directory.base_dn and \
             directory.filter)"
                .into(),
        ));
    }
    let photo_changes = photo_changes(ctx, photo_bytes, &mut rows.bad).await?;
    let options = ImportOptions {
        dry_run: false,
        skip_bad_rows: true,
        deactivate_missing: true,
    };
    apply(ctx, operator, rows, options, "directory", photo_changes).await
}

/// What the directory's photos change, by employee number (lower case): a photo that is new or
/// differs from the one the directory gave before is re-encoded (before any write, so no
/// transaction waits for it); a directory photo that is gone is removed. A photo an operator
/// uploaded stays. A photo that cannot be read is reported with its entry and changes nothing.
async fn photo_changes(
    ctx: &Context,
    entries: Vec<EntryPhoto>,
    bad: &mut Vec<BadRow>,
) -> Result<HashMap<String, PhotoChange>, ProcessError> {
    let (ids, stored) = {
        let mut conn = ctx.store.reader().await?;
        let ids: HashMap<String, String> = persons::all(&mut conn)
            .await?
            .into_iter()
            .map(|p| {
                (
                    p.employee_number.as_str().to_ascii_lowercase(),
                    p.id.to_string(),
                )
            })
            .collect();
        (ids, photos::sources(&mut conn).await?)
    };
    let mut changes = HashMap::new();
    for EntryPhoto {
        line,
        number,
        bytes,
    } in entries
    {
        let key = number.to_ascii_lowercase();
        let current = ids.get(&key).and_then(|id| stored.get(id));
        match (bytes, current) {
            // An uploaded photo stays; an entry without a photo has nothing to set.
            (_, Some((PhotoSource::Upload, _))) | (None, None) => {}
            (None, Some((PhotoSource::Directory, _))) => {
                changes.insert(key, PhotoChange::Remove);
            }
            (Some(bytes), current) => {
                let hash = crate::photos::source_hash(&bytes);
                if current.is_some_and(|(_, old)| *old == hash) {
                    continue;
                }
                match crate::photos::normalize_async(bytes).await? {
                    Ok(photo) => {
                        changes.insert(key, PhotoChange::Set(photo));
                    }
                    Err(message) => bad.push(BadRow {
                        line,
                        message: format!(
                            "employee number {number}: {message}; the photo is left as it was"
                        ),
                    }),
                }
            }
        }
    }
    Ok(changes)
}

/// What the import writes (each person, and whether it is new), counted into `report`.
fn plan(
    ctx: &Context,
    existing: &[Person],
    rows: Vec<Row>,
    named_by_bad: &HashSet<String>,
    options: ImportOptions,
    report: &mut ImportReport,
) -> Vec<(Person, bool)> {
    let by_number: HashMap<String, &Person> = existing
        .iter()
        .map(|p| (p.employee_number.as_str().to_ascii_lowercase(), p))
        .collect();
    let mut writes: Vec<(Person, bool)> = Vec::new();
    let mut named = HashSet::new();
    for row in rows {
        let key = row.employee_number.as_str().to_ascii_lowercase();
        named.insert(key.clone());
        match by_number.get(&key) {
            None => {
                let (millis, random) = ctx.id_parts();
                report.created.push(row.employee_number.as_str().to_owned());
                writes.push((
                    Person {
                        id: PersonId::new(millis, random),
                        employee_number: row.employee_number,
                        given_name: row.given_name,
                        family_name: row.family_name,
                        email: row.email,
                        state: row.state,
                    },
                    true,
                ));
            }
            Some(old) => {
                let new = Person {
                    id: old.id,
                    employee_number: old.employee_number.clone(),
                    given_name: row.given_name,
                    family_name: row.family_name,
                    email: row.email,
                    state: row.state,
                };
                if new == **old {
                    report.unchanged += 1;
                    continue;
                }
                if old.state == PersonState::Active && new.state == PersonState::Inactive {
                    report
                        .deactivated
                        .push(new.employee_number.as_str().to_owned());
                } else {
                    report.updated.push(new.employee_number.as_str().to_owned());
                }
                writes.push((new, false));
            }
        }
    }
    if options.deactivate_missing {
        for person in existing {
            let key = person.employee_number.as_str().to_ascii_lowercase();
            if person.state == PersonState::Active
                && !named.contains(&key)
                && !named_by_bad.contains(&key)
            {
                report
                    .deactivated
                    .push(person.employee_number.as_str().to_owned());
                let mut gone = person.clone();
                gone.state = PersonState::Inactive;
                writes.push((gone, false));
            }
        }
    }
    writes
}

/// Carries out `on_person_deactivated` on the assigned cards of persons who were deactivated:
/// each card by its own process (withdraw or lock), with its own audit event.
pub async fn handle_cards_of(
    ctx: &Context,
    operator: &Operator,
    leaving: &[PersonId],
) -> Result<Vec<CardAction>, ProcessError> {
    let mut actions = Vec::new();
    for person in leaving {
        let held = {
            let mut conn = ctx.store.reader().await?;
            let filter = CardFilter {
                state: Some(states::ASSIGNED),
                holder: Some(*person),
                ..CardFilter::default()
            };
            cards::list(&mut conn, &filter, 100).await?
        };
        for record in held {
            let choice = {
                let mut conn = ctx.store.reader().await?;
                ctx.scripts
                    .for_run(
                        &mut conn,
                        &record.template_name,
                        "TempCardsSysPersonDeactivated",
                        operator.username.as_str(),
                    )
                    .await?
                    .options
                    .on_person_deactivated
            };
            let serial = record.card.serial.as_str().to_owned();
            let why = cardwright_domain::temp_cards::Reason {
                kind: cardwright_domain::temp_cards::ReasonKind::Other,
                comment: Some("the holder was deactivated".into()),
            };
            let done = match choice.as_str() {
                "withdraw" => {
                    crate::temp_cards::withdraw::withdraw(ctx, operator, record.card.id, Some(&why))
                        .await
                        .map(|_| "withdrawn")
                }
                "keep" => Ok("kept"),
                _ => crate::temp_cards::lock::lock(ctx, operator, record.card.id, Some(&why))
                    .await
                    .map(|_| "locked"),
            };
            actions.push(CardAction {
                serial,
                outcome: done.map_or_else(|e| format!("not changed: {e}"), str::to_owned),
            });
        }
    }
    Ok(actions)
}

/// The last directory sync: when, and its counts, as its audit event recorded them.
pub async fn last_sync(
    ctx: &Context,
) -> Result<Option<(cardwright_domain::Timestamp, serde_json::Value)>, ProcessError> {
    let mut conn = ctx.store.reader().await?;
    Ok(audit::last_of(&mut conn, "PersonsSync")
        .await?
        .map(|e| (e.at, serde_json::from_str(&e.details).unwrap_or_default())))
}
