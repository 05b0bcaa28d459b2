//! `cardwright bench encode`: production of encoded cards, as a station does it, against the raw
//! PKCS#11 work those cards need.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cardwright_cardsdk::encoder::Pkcs11Encoder;
use cardwright_cardsdk::SimulatedPrinter;
use cardwright_domain::temp_cards::OPTION_SCRIPT as SCRIPT_NAME;
use cardwright_domain::template::DEFAULT_TEMPLATE_NAME;
use cardwright_domain::Role;
use cardwright_processes::temp_cards::production::{self, Station};
use cardwright_processes::temp_cards::{issue_multiple, request};
use cardwright_processes::{auth, scripts, Actor};
use cardwright_storage::Store;
use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, CertificateType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

const PIN: &str = "123456";
const PUK: &str = "12345678";

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Points SoftHSM2 at a token folder of its own in `dir`, whatever SOFTHSM2_CONF says, so that a
/// run leaves no token behind anywhere. The module reads it when it is first initialised, so this
/// comes before any PKCS#11 call.
pub(crate) fn scratch_softhsm(dir: &Path) -> anyhow::Result<()> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    std::env::set_var("SOFTHSM2_CONF", &conf);
    Ok(())
}

/// Produces `cards` encoded cards through a station's whole production attempt (claim, token,
/// PUK as SO PIN, PIN, key, certificate from the built-in CA written to the card, PIN letter
/// rendered, PUK sealed, outcome with certificates and audit event committed) on a scratch
/// SQLite database, alternating card by card with the raw PKCS#11 calls such a card needs, so
/// both meet the same number of tokens. Printing is left out (the printer discards its jobs).
pub async fn run(cards: u32, module: &Path) -> anyhow::Result<()> {
    let cards = cards.max(1);
    let scratch = tempfile::tempdir()?;
    scratch_softhsm(scratch.path())?;

    let encoder = Arc::new(Pkcs11Encoder::new(module));
    let ctx = crate::bench::context_with(
        &Store::sqlite_url(&scratch.path().join("bench.db")),
        Some(Arc::clone(&encoder)),
    )
    .await?;
    let op = auth::add_operator(
        &ctx,
        &Actor::System("bench"),
        "bench",
        Role::ALL.into_iter().collect(),
        "bench-password",
    )
    .await
    .map_err(failed)?;
    scripts::save(
        &ctx,
        &op,
        SCRIPT_NAME,
        &format!(
            "pin_length = {};\npuk_length = {};\nencode = true;\ncertificates = [\"authentication\"];\n",
            PIN.len(),
            PUK.len()
        ),
    )
    .await
    .map_err(failed)?;
    let requested = request::request(&ctx, &op, DEFAULT_TEMPLATE_NAME, i64::from(cards))
        .await
        .map_err(failed)?;
    let ids: Vec<_> = requested.iter().map(|c| c.card.id).collect();
    let order = issue_multiple::create(&ctx, &op, "TempCardsBoProcIssueMultiple", &ids)
        .await
        .map_err(failed)?;
    issue_multiple::next(&ctx, &op, order.record.order.id, None)
        .await
        .map_err(failed)?;
    let station = Station {
        name: "bench-encode".into(),
        printer: Arc::new(SimulatedPrinter::discarding(0, Duration::ZERO)),
        encoder: Some(encoder),
    };

    let raw = RawWork::new(module)?;
    let (mut ours, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for n in 0..cards {
        let started = Instant::now();
        if !production::produce_one(&ctx, &station)
            .await
            .map_err(failed)?
        {
            bail!("the queue ran dry after {n} cards");
        }
        ours += started.elapsed();
        let started = Instant::now();
        raw.card(n)?;
        raw_time += started.elapsed();
    }
    let done = issue_multiple::get(&ctx, order.record.order.id)
        .await
        .map_err(failed)?;
    let produced = done.record.counts.produced;
    ctx.store.close().await;
    if produced != u64::from(cards) {
        bail!("{produced} of {cards} cards were produced; the others failed");
    }
    let overhead = (ours.as_secs_f64() / raw_time.as_secs_f64() - 1.0) * 100.0;
    println!(
        "chip encoding on {}: {:.1} cards/s produced through Cardwright (claim, token, PIN, key, certificate, PIN letter, sealed PUK, outcome committed), {:.1} cards/s of raw PKCS#11 work (token, PIN, key, certificate): overhead {overhead:.1} % over {cards} cards",
        module.display(),
        f64::from(cards) / ours.as_secs_f64(),
        f64::from(cards) / raw_time.as_secs_f64(),
    );
    Ok(())
}

/// The same PKCS#11 calls Cardwright makes for a card, with a fixed certificate, nothing else.
struct RawWork {
    pkcs11: Pkcs11,
}

impl RawWork {
    fn new(module: &Path) -> anyhow::Result<Self> {
        // The module the encoder loaded, from the process's one registry.
        let pkcs11 = cardwright_pki::pkcs11::module(module)
            .map_err(|e| anyhow::anyhow!("{}", cardwright_processes::report(&e)))?;
        Ok(Self { pkcs11 })
    }

    fn card(&self, n: u32) -> anyhow::Result<()> {
        let pkcs11 = &self.pkcs11;
        let slot = pkcs11
            .get_slots_with_token()?
            .into_iter()
            .find(|s| {
                pkcs11
                    .get_token_info(*s)
                    .is_ok_and(|i| !i.token_initialized())
            })
            .context("no free token")?;
        let puk = AuthPin::from(PUK.to_owned());
        pkcs11.init_token(slot, &puk, &format!("RAW-{n:06}"))?;
        let session = pkcs11.open_rw_session(slot)?;
        session.login(UserType::So, Some(&puk))?;
        session.init_pin(&AuthPin::from(PIN.to_owned()))?;
        session.logout()?;
        session.login(UserType::User, Some(&AuthPin::from(PIN.to_owned())))?;
        let id = vec![1u8];
        session.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Id(id.clone()),
                Attribute::Verify(true),
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Id(id.clone()),
            ],
        )?;
        session.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(id),
            Attribute::Subject(vec![0x30, 0x00]),
            Attribute::Value(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        ])?;
        session.logout()?;
        Ok(())
    }
}
