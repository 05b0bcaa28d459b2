//! A production station: the part of production that works the devices. It takes a [`Job`] (one
//! card of a batch order, with what its chip gets) and returns an [`Outcome`]: the card was
//! produced, it failed and why, or the station stopped. It keeps no records and opens no
//! database; whoever handed out the job records the outcome. The server's own stations run this
//! code in its process, next to the queue.

use std::sync::Arc;

use cardwright_cardsdk::encoder::{CardCertificate, CardKey, EncodeError, KeySpec, Pkcs11Encoder};
use cardwright_cardsdk::layout::{pin_letter_pdf, TEMPORARY_BACK, TEMPORARY_FRONT};
use cardwright_cardsdk::{CardArtwork, CardFace, LayoutError, PrintError, PrintJob, Printer};

/// A printer and, optionally, a chip encoder that produce one card at a time.
#[derive(Debug, Clone)]
pub struct Station {
    pub name: String,
    pub printer: Arc<dyn Printer>,
    pub encoder: Option<Arc<Pkcs11Encoder>>,
}

/// One card to produce.
#[derive(Debug, Clone)]
pub struct Job {
    pub card_id: String,
    pub serial: String,
    pub template: String,
    pub order_id: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The template's layouts; `None` for the shipped ones.
    pub front_layout: Option<String>,
    pub back_layout: Option<String>,
    /// The date printed on the card, `YYYY-MM-DD`.
    pub issue_date: String,
    /// What the chip gets; `None` for a card printed only.
    pub encoding: Option<Encoding>,
}

/// What a card's chip is initialised with.
#[derive(Clone)]
pub struct Encoding {
    /// The new PIN: it goes on the chip and on the PIN letter, nowhere else.
    pub pin: String,
    /// The new PUK (the chip's security officer PIN).
    pub puk: String,
    /// The PUK of an earlier attempt, for a chip that was initialised already.
    pub old_puk: Option<String>,
    /// The keys to generate, one per certificate profile.
    pub keys: Vec<KeySpec>,
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoding")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Signs the public keys a chip generates. The station asks for each key while the chip's
/// session is open, so the certificate lands next to its key.
pub trait Issuer: Send + Sync {
    /// A certificate for `key` of the card with serial `serial`, and the certificate's serial
    /// number (hex), by which the outcome names it.
    fn certify(
        &self,
        serial: &str,
        key: &CardKey,
    ) -> Result<(CardCertificate, String), Box<dyn std::error::Error + Send + Sync>>;
}

/// How one job ended.
#[derive(Debug)]
pub enum Outcome {
    /// The card came out of the printer; `certificates` are the serials of those on its chip
    /// (empty for a card printed only).
    Produced { certificates: Vec<String> },
    /// The card was not produced. Certificates issued before the failure may be on the chip, so
    /// they are named for revocation.
    Failed {
        error: ProductionError,
        certificates: Vec<String>,
    },
    /// The station stopped with the card in hand (a crash, a restart); nothing is known of it.
    Interrupted,
}

/// Why a card was not produced.
#[derive(Debug, thiserror::Error)]
pub enum ProductionError {
    #[error("encoding is on, but station {0} has no chip encoder")]
    NoEncoder(String),
    #[error("encoding failed")]
    Encode(#[source] EncodeError),
    #[error("PIN letter")]
    PinLetter(#[source] LayoutError),
    #[error(transparent)]
    Print(PrintError),
    /// The server could not prepare the job (no certificate authority, an unknown profile).
    #[error("{0}")]
    Unprepared(String),
    #[error("the station's worker stopped")]
    Stopped(#[source] tokio::task::JoinError),
}

/// An error and its causes, one after the other (`outer: cause: root cause`), as a failure's
/// reason is recorded and shown; a cause that its outer error already prints is not repeated.
pub fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

impl Station {
    /// Produces the job's card: the chip first (when the job says so), then the card and its PIN
    /// letter on the printer.
    pub async fn produce(&self, job: &Job, issuer: Arc<dyn Issuer>) -> Outcome {
        let (pin_letter, certificates) = match &job.encoding {
            None => (None, Vec::new()),
            Some(encoding) => match self.encode(job, encoding, issuer).await {
                Ok(done) => (Some(done.0), done.1),
                Err((error, certificates)) => {
                    return Outcome::Failed {
                        error,
                        certificates,
                    }
                }
            },
        };
        let face = CardFace {
            serial: job.serial.clone(),
            template: job.template.clone(),
            issue_date: job.issue_date.clone(),
            ..CardFace::default()
        };
        let artwork = CardArtwork::new(
            job.front_layout.as_deref().unwrap_or(TEMPORARY_FRONT),
            job.back_layout.as_deref().unwrap_or(TEMPORARY_BACK),
            face,
        );
        let print = PrintJob {
            card_id: job.card_id.clone(),
            serial: job.serial.clone(),
            template: job.template.clone(),
            order_id: job.order_id.clone(),
            attempt: job.attempt,
            station: self.name.clone(),
            artwork,
            pin_letter,
        };
        match self.printer.print(&print).await {
            Ok(()) => Outcome::Produced { certificates },
            Err(e) => Outcome::Failed {
                error: ProductionError::Print(e),
                certificates,
            },
        }
    }

    /// Initialises the chip and renders the PIN letter. On failure, the serials of the
    /// certificates issued so far come back with the error.
    async fn encode(
        &self,
        job: &Job,
        encoding: &Encoding,
        issuer: Arc<dyn Issuer>,
    ) -> Result<(Vec<u8>, Vec<String>), (ProductionError, Vec<String>)> {
        let encoder = self
            .encoder
            .clone()
            .ok_or_else(|| (ProductionError::NoEncoder(self.name.clone()), Vec::new()))?;
        let serial = job.serial.clone();
        let issue_date = job.issue_date.clone();
        let encoding = encoding.clone();
        tokio::task::spawn_blocking(move || {
            let mut certified = Vec::new();
            let result = encoder.encode(
                &serial,
                &encoding.puk,
                &encoding.pin,
                encoding.old_puk.as_deref(),
                &encoding.keys,
                &mut |key| {
                    let (certificate, number) = issuer
                        .certify(&serial, key)
                        .map_err(EncodeError::Certificate)?;
                    certified.push(number);
                    Ok(certificate)
                },
            );
            let letter = result.map_err(ProductionError::Encode).and_then(|_| {
                pin_letter_pdf(&serial, &encoding.pin, &issue_date)
                    .map_err(ProductionError::PinLetter)
            });
            match letter {
                Ok(letter) => Ok((letter, certified)),
                Err(e) => Err((e, certified)),
            }
        })
        .await
        .map_err(|e| (ProductionError::Stopped(e), Vec::new()))?
    }
}
