//! What the API sends and receives. Built from domain and storage records at the edge, so no
//! stored type renders itself as JSON.

use cardwright_domain::temp_cards::ProcessDef;
use cardwright_domain::{CardTemplate, Person};
use cardwright_processes::temp_cards::cards::CardProfile;
use cardwright_storage::audit::Event;
use cardwright_storage::cards::CardRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema::{
    optional_template_description, EmailText, EmployeeNumberText, PersonNameText, PersonStateText,
    SerialPrefixText, TemplateKindText, TemplateNameText,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HolderRef {
    pub id: String,
    pub employee_number: String,
    pub name: String,
}

/// A temporary card.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    pub id: String,
    /// The number printed on the card.
    pub serial: String,
    pub template: TemplateRef,
    /// requested, aborted, failed, unassigned, assigned, expired or locked.
    pub state: String,
    pub holder: Option<HolderRef>,
    pub valid_until: Option<DateTime<Utc>>,
    pub encoded: bool,
    pub batch_order: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CardRecord> for CardView {
    fn from(r: CardRecord) -> Self {
        Self {
            id: r.card.id.to_string(),
            serial: r.card.serial.to_string(),
            template: TemplateRef {
                id: r.card.template.to_string(),
                name: r.template_name,
            },
            state: r.card.state.as_str().to_owned(),
            holder: r.holder.map(|h| HolderRef {
                id: h.id.to_string(),
                employee_number: h.employee_number,
                name: h.name,
            }),
            valid_until: r.card.valid_until,
            encoded: r.card.encoded,
            batch_order: r.card.batch_order.map(|o| o.to_string()),
            created_at: r.card.created_at,
            updated_at: r.card.updated_at,
        }
    }
}

/// A process the caller may start on the card now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    /// Symbolic name, e.g. `TempCardsProcAssign`.
    pub name: String,
    pub title: String,
    /// The path that starts it.
    pub path: String,
    /// The state the card ends in.
    pub end_state: String,
}

impl ProcessView {
    fn new(def: &ProcessDef, card_id: &str) -> Self {
        Self {
            name: def.name.as_str().to_owned(),
            title: def.title.to_owned(),
            path: format!("/api/v1/cards/{card_id}/{}", def.action),
            end_state: def.to.as_str().to_owned(),
        }
    }
}

/// A certificate issued for a card's chip.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// Serial number (hex), as on the revocation list.
    pub serial: String,
    /// The certificate profile, e.g. `authentication`.
    pub profile: String,
    /// `card` (names the card) or `holder` (names the person it is assigned to).
    pub kind: String,
    pub subject: String,
    /// `valid` or `revoked`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<cardwright_storage::certificates::CertificateRecord> for CertificateView {
    fn from(c: cardwright_storage::certificates::CertificateRecord) -> Self {
        Self {
            serial: c.serial,
            profile: c.profile,
            kind: c.kind.as_str().to_owned(),
            subject: c.subject,
            status: if c.revoked { "revoked" } else { "valid" }.to_owned(),
            issued_at: c.issued_at,
            not_after: c.not_after,
            revoked_at: c.revoked_at,
        }
    }
}

/// A card with the processes allowed now, its certificates and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardDetail {
    #[serde(flatten)]
    pub card: CardView,
    pub processes: Vec<ProcessView>,
    pub certificates: Vec<CertificateView>,
    pub history: Vec<EventView>,
}

impl From<CardProfile> for CardDetail {
    fn from(p: CardProfile) -> Self {
        let id = p.record.card.id.to_string();
        Self {
            processes: p
                .processes
                .iter()
                .map(|d| ProcessView::new(d, &id))
                .collect(),
            certificates: p
                .certificates
                .into_iter()
                .map(CertificateView::from)
                .collect(),
            history: p.history.into_iter().map(EventView::from).collect(),
            card: p.record.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardList {
    pub cards: Vec<CardView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// An audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub operator: String,
    pub process: String,
    pub card: Option<String>,
    pub order: Option<String>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// This event's link in the hash chain.
    pub hash: String,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        Self {
            details: serde_json::from_str(&e.details)
                .unwrap_or(serde_json::Value::String(e.details)),
            seq: e.seq,
            at: e.at,
            operator: e.operator,
            process: e.process,
            card: e.card,
            order: e.order,
            old_state: e.old_state,
            new_state: e.new_state,
            hash: e.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    pub next_cursor: Option<String>,
}

/// A person who may hold cards.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    pub id: String,
    pub employee_number: String,
    pub given_name: String,
    pub family_name: String,
    pub email: Option<String>,
    /// active or inactive.
    pub state: String,
}

impl From<Person> for PersonView {
    fn from(p: Person) -> Self {
        Self {
            id: p.id.to_string(),
            employee_number: p.employee_number.as_str().to_owned(),
            given_name: p.given_name.as_str().to_owned(),
            family_name: p.family_name.as_str().to_owned(),
            email: p.email.map(|e| e.as_str().to_owned()),
            state: p.state.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonList {
    pub persons: Vec<PersonView>,
    pub next_cursor: Option<String>,
}

/// A person with their cards.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonDetail {
    #[serde(flatten)]
    pub person: PersonView,
    /// Whether the person has a photo (`GET /persons/{id}/photo`).
    pub has_photo: bool,
    pub cards: Vec<CardView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPersonBody {
    #[schema(value_type = EmployeeNumberText)]
    pub employee_number: String,
    #[schema(value_type = PersonNameText)]
    pub given_name: String,
    #[schema(value_type = PersonNameText)]
    pub family_name: String,
    #[schema(value_type = Option<EmailText>)]
    pub email: Option<String>,
    /// active (default) or inactive.
    #[schema(value_type = Option<PersonStateText>)]
    pub state: Option<String>,
}

/// A card template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    pub id: String,
    pub name: String,
    /// temporary.
    pub kind: String,
    pub serial_prefix: String,
    pub description: String,
    /// The front layout it prints with (SVG).
    pub front_svg: String,
    /// The back layout it prints with (SVG).
    pub back_svg: String,
    /// False while the template uses the shipped temporary card layout.
    pub custom_layout: bool,
}

impl From<CardTemplate> for TemplateView {
    fn from(t: CardTemplate) -> Self {
        let (front, back) = cardwright_processes::templates::effective_layouts(&t);
        Self {
            id: t.id.to_string(),
            front_svg: front.to_owned(),
            back_svg: back.to_owned(),
            custom_layout: t.front_layout.is_some() || t.back_layout.is_some(),
            name: t.name.as_str().to_owned(),
            kind: t.kind.as_str().to_owned(),
            serial_prefix: t.serial_prefix.as_str().to_owned(),
            description: t.description,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    #[schema(value_type = TemplateNameText)]
    pub name: String,
    /// temporary (default).
    #[schema(value_type = Option<TemplateKindText>)]
    pub kind: Option<String>,
    #[schema(value_type = SerialPrefixText)]
    pub serial_prefix: String,
    #[schema(schema_with = optional_template_description)]
    pub description: Option<String>,
    /// Front layout (SVG, at most 256 KiB; no scripts, DTDs or outside links). Omitted: keep
    /// the current one.
    pub front_svg: Option<String>,
    /// Back layout, as the front.
    pub back_svg: Option<String>,
}

impl From<TemplateBody> for cardwright_processes::templates::TemplateInput {
    fn from(b: TemplateBody) -> Self {
        Self {
            name: b.name,
            kind: b.kind,
            serial_prefix: b.serial_prefix,
            description: b.description,
            front_svg: b.front_svg,
            back_svg: b.back_svg,
        }
    }
}

/// Items per status.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountsView {
    pub selected: u64,
    pub queued: u64,
    pub producing: u64,
    pub produced: u64,
    pub failed: u64,
}

impl From<cardwright_storage::batch_orders::Counts> for CountsView {
    fn from(c: cardwright_storage::batch_orders::Counts) -> Self {
        Self {
            selected: c.selected,
            queued: c.queued,
            producing: c.producing,
            produced: c.produced,
            failed: c.failed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemCardView {
    pub id: String,
    pub serial: String,
    pub state: String,
}

/// One card of a batch order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub card: ItemCardView,
    /// selected, queued, producing, produced or failed.
    pub status: String,
    /// Production attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// The station of the last attempt.
    pub station: Option<String>,
}

/// One production attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub card: String,
    pub attempt: u32,
    pub station: String,
    /// producing, produced or failed.
    pub outcome: String,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A batch order without its items.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOrderSummary {
    pub id: String,
    pub process: String,
    /// open, producing, produced, completed or cancelled.
    pub state: String,
    /// The operator who made the order.
    pub operator: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub counts: CountsView,
    /// The station named to produce the order at Next; absent: any station.
    pub station: Option<String>,
}

impl From<cardwright_storage::batch_orders::OrderRecord> for BatchOrderSummary {
    fn from(r: cardwright_storage::batch_orders::OrderRecord) -> Self {
        Self {
            id: r.order.id.to_string(),
            process: r.process,
            state: r.order.state.as_str().to_owned(),
            operator: r.operator_name,
            created_at: r.order.created_at,
            updated_at: r.order.updated_at,
            counts: r.counts.into(),
            station: r.station,
        }
    }
}

/// A batch order with its items (and, when read alone, its production attempts).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOrderView {
    #[serde(flatten)]
    pub order: BatchOrderSummary,
    pub items: Vec<ItemView>,
    pub attempts: Vec<AttemptView>,
}

impl BatchOrderView {
    pub fn new(
        view: cardwright_processes::temp_cards::issue_multiple::OrderView,
        attempts: Vec<cardwright_storage::batch_orders::Attempt>,
    ) -> Self {
        Self {
            order: view.record.into(),
            items: view
                .items
                .into_iter()
                .map(|i| ItemView {
                    card: ItemCardView {
                        id: i.item.card.to_string(),
                        serial: i.serial,
                        state: i.card_state.as_str().to_owned(),
                    },
                    status: i.item.status.as_str().to_owned(),
                    attempts: i.item.attempts,
                    error: i.item.error,
                    station: i.item.station,
                })
                .collect(),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptView {
                    card: a.card.to_string(),
                    attempt: a.attempt,
                    station: a.station,
                    outcome: a.outcome,
                    error: a.error,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOrderList {
    pub batch_orders: Vec<BatchOrderSummary>,
    pub next_cursor: Option<String>,
}
