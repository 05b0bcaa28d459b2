//! Sending mails through the configured SMTP server.

use std::time::Duration;

use cardwright_storage::mails::Mail;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// How one mail went.
#[derive(Debug)]
pub enum Sent {
    Accepted,
    /// Worth trying again later (the server is down, busy, or said 4xx).
    Retry(String),
    /// Never going to work (a bad address, a 5xx answer).
    Refused(String),
}

/// The SMTP server, with a pool of connections.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Self> {
        let host = config.host.as_str();
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
        };
        let mut builder = builder
            .port(config.effective_port())
            .timeout(Some(Duration::from_secs(config.timeout_secs)));
        if !config.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.username.clone(),
                config.password.clone(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: config.from.trim().parse()?,
        })
    }

    /// Sends one mail. Its Message-ID is the mail's own, so a mail sent twice (a server died
    /// between sending and recording) reads as one to mail clients that look.
    pub async fn send(&self, mail: &Mail) -> Sent {
        let message = match self.message(mail) {
            Ok(m) => m,
            Err(e) => return Sent::Refused(e),
        };
        match self.transport.send(message).await {
            Ok(_) => Sent::Accepted,
            Err(e) if e.is_permanent() => Sent::Refused(cardwright_processes::report(&e)),
            Err(e) => Sent::Retry(cardwright_processes::report(&e)),
        }
    }

    fn message(&self, mail: &Mail) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@cardwright>", mail.id)))
            .header(ContentType::TEXT_PLAIN);
        for to in &mail.recipients {
            let address: Mailbox = to
                .parse()
                .map_err(|e| format!("the address '{to}' is not valid: {e}"))?;
            builder = builder.to(address);
        }
        for cc in &mail.copy_to {
            let address: Mailbox = cc
                .parse()
                .map_err(|e| format!("the address '{cc}' is not valid: {e}"))?;
            builder = builder.cc(address);
        }
        builder
            .body(mail.body.clone())
            .map_err(|e| format!("the mail could not be built: {e}"))
    }
}
