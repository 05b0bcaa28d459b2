//! Printing over IPP: the card's PDF goes to a CUPS queue or any IPP Everywhere printer, and the
//! job is followed until the printer reports it done, so a printer's error becomes the item's
//! failure reason.

use std::io::Cursor;
use std::time::Duration;

use ipp::model::{DelimiterTag, StatusCode};
use ipp::prelude::{
    AsyncIppClient, IppOperationBuilder, IppPayload, IppRequestResponse, IppValue, Uri,
};

use crate::printer::{render_pdf, BoxFuture, PrintError, PrintJob, Printer};

/// IPP job states (RFC 8011, 5.3.7).
const JOB_CANCELED: i32 = 7;
const JOB_ABORTED: i32 = 8;
const JOB_COMPLETED: i32 = 9;

/// Why a submission did not give a job id.
enum Submit {
    /// The printer is printing another job; ask again.
    Busy,
    Failed(PrintError),
}

/// A printer reached over IPP.
#[derive(Debug, Clone)]
pub struct IppPrinter {
    uri: Uri,
    /// How long one card may take from submission to completion.
    job_timeout: Duration,
    poll: Duration,
}

impl IppPrinter {
    /// A printer at `uri` (`ipp://host:port/printers/NAME` or `ipps://...`).
    pub fn new(uri: &str, job_timeout: Duration) -> Result<Self, PrintError> {
        let parsed: Uri = uri
            .parse()
            .map_err(|e| PrintError::Io(format!("'{uri}' is not a printer URI: {e}")))?;
        if !matches!(parsed.scheme_str(), Some("ipp" | "ipps" | "http" | "https")) {
            return Err(PrintError::Io(format!(
                "'{uri}' is not an ipp:// or ipps:// URI"
            )));
        }
        Ok(Self {
            uri: parsed,
            job_timeout,
            poll: Duration::from_millis(200),
        })
    }

    fn client(&self) -> AsyncIppClient {
        AsyncIppClient::builder(self.uri.clone())
            .request_timeout(Duration::from_secs(30))
            .build()
    }

    /// Submits the job; while the printer answers "busy" (still printing another card) it is
    /// asked again, until the job timeout.
    async fn submit(&self, job: &PrintJob, pdf: &[u8]) -> Result<i32, PrintError> {
        let deadline = tokio::time::Instant::now() + self.job_timeout;
        loop {
            let sent = tokio::time::timeout_at(deadline, self.send(job, pdf.to_vec()))
                .await
                .map_err(|_| {
                    PrintError::Printer(format!(
                        "the printer did not take the job within {} s: it stopped answering",
                        self.job_timeout.as_secs()
                    ))
                })?;
            match sent {
                Ok(job_id) => return Ok(job_id),
                Err(Submit::Failed(e)) => return Err(e),
                Err(Submit::Busy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(self.poll).await;
                }
                Err(Submit::Busy) => {
                    return Err(PrintError::Printer(format!(
                        "printer stayed busy for {} s",
                        self.job_timeout.as_secs()
                    )))
                }
            }
        }
    }

    async fn send(&self, job: &PrintJob, pdf: Vec<u8>) -> Result<i32, Submit> {
        let operation =
            IppOperationBuilder::print_job(self.uri.clone(), IppPayload::new(Cursor::new(pdf)))
                .user_name("cardwright")
                .job_title(format!(
                    "{} (order {}, attempt {})",
                    job.serial, job.order_id, job.attempt
                ))
                .document_format("application/pdf")
                .build()
                .map_err(|e| Submit::Failed(PrintError::Io(e.to_string())))?;
        let response = self.client().send(operation).await.map_err(|e| {
            Submit::Failed(PrintError::Printer(format!(
                "printer at {} cannot be reached: {e}",
                self.uri
            )))
        })?;
        let status = response.header().status_code();
        if status == StatusCode::ServerErrorBusy {
            return Err(Submit::Busy);
        }
        if !status.is_success() {
            return Err(Submit::Failed(PrintError::Printer(format!(
                "printer refused the job: {status}{}",
                message(&response)
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ))));
        }
        job_attribute(&response, "job-id")
            .and_then(|v| match v {
                IppValue::Integer(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| {
                Submit::Failed(PrintError::Printer(
                    "printer accepted the job but gave no job id".into(),
                ))
            })
    }

    async fn wait(&self, job_id: i32) -> Result<(), PrintError> {
        let deadline = tokio::time::Instant::now() + self.job_timeout;
        loop {
            let operation = IppOperationBuilder::get_job_attributes(self.uri.clone(), job_id)
                .build()
                .map_err(|e| PrintError::Io(e.to_string()))?;
            // A printer that stops answering mid-job must not hold the station past the job
            // timeout: each question ends with it too.
            let response = tokio::time::timeout_at(deadline, self.client().send(operation))
                .await
                .map_err(|_| {
                    PrintError::Printer(format!(
                        "job {job_id} did not finish within {} s: the printer stopped answering",
                        self.job_timeout.as_secs()
                    ))
                })?
                .map_err(|e| {
                    PrintError::Printer(format!(
                        "printer stopped answering during job {job_id}: {e}"
                    ))
                })?;
            let state = job_attribute(&response, "job-state").and_then(|v| match v {
                IppValue::Enum(s) | IppValue::Integer(s) => Some(*s),
                _ => None,
            });
            match state {
                Some(JOB_COMPLETED) => return Ok(()),
                Some(JOB_CANCELED | JOB_ABORTED) => {
                    let reason = job_attribute(&response, "job-state-message")
                        .map(ToString::to_string)
                        .filter(|m| !m.is_empty())
                        .or_else(|| {
                            job_attribute(&response, "job-state-reasons").map(ToString::to_string)
                        })
                        .unwrap_or_else(|| "job aborted".into());
                    let word = if state == Some(JOB_CANCELED) {
                        "canceled"
                    } else {
                        "aborted"
                    };
                    return Err(PrintError::Printer(format!(
                        "job {job_id} {word}: {reason}"
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PrintError::Printer(format!(
                    "job {job_id} did not finish within {} s",
                    self.job_timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

fn job_attribute<'a>(response: &'a IppRequestResponse, name: &str) -> Option<&'a IppValue> {
    response
        .attributes()
        .groups_of(DelimiterTag::JobAttributes)
        .find_map(|group| group.get(name))
        .map(ipp::attribute::IppAttribute::value)
}

fn message(response: &IppRequestResponse) -> Option<String> {
    response
        .attributes()
        .groups_of(DelimiterTag::OperationAttributes)
        .find_map(|group| group.get("status-message"))
        .map(|a| a.value().to_string())
}

impl Printer for IppPrinter {
    fn print<'a>(&'a self, job: &'a PrintJob) -> BoxFuture<'a, Result<(), PrintError>> {
        Box::pin(async move {
            let pdf = render_pdf(job).await?;
            let job_id = self.submit(job, &pdf).await?;
            self.wait(job_id).await?;
            if let Some(letter) = &job.pin_letter {
                let job_id = self.submit(job, letter).await?;
                self.wait(job_id).await?;
            }
            Ok(())
        })
    }
}
