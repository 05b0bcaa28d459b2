//! Printers. A station hands each card to its printer as a [`PrintJob`]; the printer either
//! produces it or says why not, in words an operator understands.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::layout::CardArtwork;

/// A boxed future, so printers of every kind fit behind one trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One card to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintJob {
    pub card_id: String,
    pub serial: String,
    pub template: String,
    pub order_id: String,
    pub attempt: u32,
    pub station: String,
    /// The card's filled layouts.
    pub artwork: CardArtwork,
    /// The PIN letter (PDF) of an encoded card, printed with it.
    pub pin_letter: Option<Vec<u8>>,
}

/// Width of the spooled PNG preview, in pixels.
pub const PREVIEW_WIDTH: u32 = 640;

/// Renders the job's PDF off the async threads.
pub(crate) async fn render_pdf(job: &PrintJob) -> Result<Vec<u8>, PrintError> {
    let artwork = job.artwork.clone();
    tokio::task::spawn_blocking(move || artwork.pdf())
        .await
        .map_err(|e| PrintError::Io(format!("rendering stopped: {e}")))?
        .map_err(|e| PrintError::Io(format!("card layout: {e}")))
}

impl PrintJob {
    /// The file name of this job's output: serial and attempt, unique within an order.
    pub fn file_stem(&self) -> String {
        format!("{}-attempt{}", self.serial, self.attempt)
    }

    fn describe(&self) -> String {
        format!(
            "Cardwright print job\nserial: {}\ncard: {}\ntemplate: {}\norder: {}\nattempt: {}\nstation: {}\n",
            self.serial, self.card_id, self.template, self.order_id, self.attempt, self.station
        )
    }
}

/// Why a card did not come out of the printer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrintError {
    /// The printer reported a problem (ribbon out, card jam, offline...).
    #[error("printer error: {0}")]
    Printer(String),
    /// The job could not be handed to the printer.
    #[error("could not send the job: {0}")]
    Io(String),
}

/// A card printer.
pub trait Printer: Send + Sync + std::fmt::Debug {
    /// Prints one card; returns once the printer has finished it or failed.
    fn print<'a>(&'a self, job: &'a PrintJob) -> BoxFuture<'a, Result<(), PrintError>>;
}

/// Writes each job to a folder, one sub-folder per order: the embedded default.
#[derive(Debug, Clone)]
pub struct SpoolPrinter {
    dir: PathBuf,
}

impl SpoolPrinter {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Writes the job's PDF, its front preview (PNG) and a short description.
    async fn write(&self, job: &PrintJob) -> Result<(), PrintError> {
        let dir = self.dir.join(&job.order_id);
        let mut folder = tokio::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        folder.mode(0o700);
        folder
            .create(&dir)
            .await
            .map_err(|e| PrintError::Io(format!("spool folder {}: {e}", dir.display())))?;
        let artwork = job.artwork.clone();
        let (pdf, png) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::LayoutError>((
                artwork.pdf()?,
                artwork.png(crate::Side::Front, PREVIEW_WIDTH)?,
            ))
        })
        .await
        .map_err(|e| PrintError::Io(format!("rendering stopped: {e}")))?
        .map_err(|e| PrintError::Io(e.to_string()))?;
        let stem = job.file_stem();
        let mut files = vec![
            (format!("{stem}.pdf"), pdf),
            (format!("{stem}.png"), png),
            (format!("{stem}.job"), job.describe().into_bytes()),
        ];
        if let Some(letter) = &job.pin_letter {
            files.push((format!("{stem}-pin-letter.pdf"), letter.clone()));
        }
        for (name, bytes) in files {
            let path = dir.join(name);
            write_private(&path, &bytes)
                .await
                .map_err(|e| PrintError::Io(format!("spool file {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// Writes a spool file readable by the server's own user only: a PIN letter holds a PIN in
/// clear, and a card names its holder.
async fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).await?;
    // A file left by an older version keeps its mode on open; narrow it too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .await?;
    }
    file.write_all(bytes).await?;
    file.flush().await
}

impl Printer for SpoolPrinter {
    fn print<'a>(&'a self, job: &'a PrintJob) -> BoxFuture<'a, Result<(), PrintError>> {
        Box::pin(self.write(job))
    }
}

/// A printer for demos and tests: it spools like [`SpoolPrinter`], takes `delay` per card and
/// fails every `fail_every`th job (0: never) with "ribbon out".
#[derive(Debug)]
pub struct SimulatedPrinter {
    /// Where jobs are written; `None` discards them (for measuring everything but rendering).
    spool: Option<SpoolPrinter>,
    fail_every: u64,
    delay: Duration,
    jobs: AtomicU64,
}

impl SimulatedPrinter {
    pub fn new(dir: impl Into<PathBuf>, fail_every: u64, delay: Duration) -> Self {
        Self {
            spool: Some(SpoolPrinter::new(dir)),
            fail_every,
            delay,
            jobs: AtomicU64::new(0),
        }
    }

    /// A simulated printer that renders and writes nothing.
    pub fn discarding(fail_every: u64, delay: Duration) -> Self {
        Self {
            spool: None,
            fail_every,
            delay,
            jobs: AtomicU64::new(0),
        }
    }
}

impl Printer for SimulatedPrinter {
    fn print<'a>(&'a self, job: &'a PrintJob) -> BoxFuture<'a, Result<(), PrintError>> {
        Box::pin(async move {
            let n = self.jobs.fetch_add(1, Ordering::SeqCst) + 1;
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
                return Err(PrintError::Printer("ribbon out".into()));
            }
            match &self.spool {
                Some(spool) => spool.write(job).await,
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(serial: &str) -> PrintJob {
        PrintJob {
            card_id: "c".into(),
            serial: serial.into(),
            template: "Temporary card".into(),
            order_id: "o1".into(),
            attempt: 1,
            station: "desk-1".into(),
            artwork: CardArtwork::new(
                crate::layout::TEMPORARY_FRONT,
                crate::layout::TEMPORARY_BACK,
                crate::CardFace {
                    serial: serial.into(),
                    ..crate::CardFace::default()
                },
            ),
            pin_letter: None,
        }
    }

    #[tokio::test]
    async fn simulated_printer_fails_every_nth_job_and_spools_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let printer = SimulatedPrinter::new(dir.path(), 3, Duration::ZERO);
        let mut outcomes = Vec::new();
        for i in 1..=6 {
            outcomes.push(printer.print(&job(&format!("TMP-{i}"))).await);
        }
        let failed: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_err())
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(failed, [3, 6]);
        assert_eq!(outcomes[2], Err(PrintError::Printer("ribbon out".into())));
        let spooled = std::fs::read_dir(dir.path().join("o1")).unwrap().count();
        assert_eq!(
            spooled,
            4 * 3,
            "a PDF, a PNG and a description per printed card"
        );
        let pdf = std::fs::read(dir.path().join("o1/TMP-1-attempt1.pdf")).unwrap();
        assert!(pdf.starts_with(b"%PDF"));
        let text = std::fs::read_to_string(dir.path().join("o1/TMP-1-attempt1.job")).unwrap();
        assert!(text.contains("serial: TMP-1"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn spool_files_and_folders_are_private_to_the_server_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let printer = SpoolPrinter::new(dir.path());
        let mut letter = job("TMP-7");
        letter.pin_letter = Some(b"%PDF-1.7 PIN 123456".to_vec());
        printer.print(&letter).await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("o1")), 0o700);
        for entry in std::fs::read_dir(dir.path().join("o1")).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        assert!(dir.path().join("o1/TMP-7-attempt1-pin-letter.pdf").exists());
    }
}
