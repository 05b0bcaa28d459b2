//! `cardwright bench pki`: certificates issued per second by the built-in CA with its key in the
//! database key store (opened into memory) and on a PKCS#11 token (SoftHSM2), in the same run; each
//! certificate is signed and recorded in a transaction of its own, as production records them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use cardwright_cardsdk::encoder::CardKey;
use cardwright_domain::temp_cards::Card;
use cardwright_domain::template::DEFAULT_TEMPLATE_NAME;
use cardwright_domain::Role;
use cardwright_pki::pkcs11::Token;
use cardwright_pki::{CertificateAuthority, Subject};
use cardwright_processes::keys::{Custody, Kek};
use cardwright_processes::temp_cards::request;
use cardwright_processes::{auth, Actor, Context, Entropy as _, OsEntropy};
use cardwright_storage::certificates::{self, CertificateKind};
use cardwright_storage::Store;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

const TOKEN_LABEL: &str = "bench-pki";
const PIN: &str = "123456";

/// A fresh SoftHSM2 token in `dir` for the CA's keys.
fn softhsm_token(module: &Path, dir: &Path) -> anyhow::Result<()> {
    crate::bench_encode::scratch_softhsm(dir)?;
    let pkcs11 = cardwright_pki::pkcs11::module(module)
        .map_err(|e| anyhow::anyhow!("{}", cardwright_processes::report(&e)))?;
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            pkcs11
                .get_token_info(*s)
                .is_ok_and(|i| !i.token_initialized())
        })
        .context("the module offers no free token")?;
    let so_pin = AuthPin::from("12345678".to_owned());
    pkcs11.init_token(slot, &so_pin, TOKEN_LABEL)?;
    let session = pkcs11.open_rw_session(slot)?;
    session.login(UserType::So, Some(&so_pin))?;
    session.init_pin(&AuthPin::from(PIN.to_owned()))?;
    session.logout()?;
    Ok(())
}

/// A scratch installation in `dir` whose keys are in `custody`, with one requested card to
/// issue certificates for.
async fn installation(dir: &Path, custody: &Custody) -> anyhow::Result<(Context, Card)> {
    let ctx =
        crate::bench::context_in(&Store::sqlite_url(&dir.join("bench.db")), custody, None).await?;
    let op = auth::add_operator(
        &ctx,
        &Actor::System("bench"),
        "bench",
        Role::ALL.into_iter().collect(),
        "bench-password",
    )
    .await
    .map_err(failed)?;
    let card = request::request(&ctx, &op, DEFAULT_TEMPLATE_NAME, 1)
        .await
        .map_err(failed)?
        .remove(0)
        .card;
    Ok((ctx, card))
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Issues `count` certificates for the card's key through the CA service, each recorded in a
/// transaction of its own as production records them; certificates per second.
async fn issue(ctx: &Context, card: &Card, count: u32) -> anyhow::Result<f64> {
    let pki = ctx.pki.clone().context("no CA")?;
    let card_key = CertificateAuthority::create(
        "card",
        cardwright_pki::CaKey::generate()?,
        1,
        chrono::Utc::now().timestamp(),
        1,
    )?;
    let key = CardKey {
        profile: "authentication".into(),
        id: vec![1],
        spki: cardwright_pki::CaInfo::of_pem(card_key.certificate_pem())?.public_key,
    };
    let subject = Subject {
        common_name: card.serial.to_string(),
        email: None,
    };
    let started = Instant::now();
    for _ in 0..count {
        let mut serial = [0u8; 16];
        OsEntropy.fill(&mut serial);
        let (_, record) = pki.issue(
            card,
            &key,
            CertificateKind::Card,
            &subject,
            None,
            cardwright_processes::pki::new_serial(serial),
            chrono::Utc::now(),
        )?;
        let mut tx = ctx.store.begin().await?;
        certificates::insert(&mut tx, &record).await?;
        Store::commit(tx).await?;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

pub async fn run(certificates: u32, module: &Path) -> anyhow::Result<()> {
    let certificates = certificates.max(1);
    let scratch = tempfile::tempdir()?;
    let database = scratch.path().join("database");
    let token_dir = scratch.path().join("token");
    std::fs::create_dir_all(&database)?;
    std::fs::create_dir_all(&token_dir)?;
    softhsm_token(module, &token_dir)?;
    let (in_database, database_card) =
        installation(&database, &Custody::Database(Kek::generate(&OsEntropy))).await?;
    let token = Token::open(module, TOKEN_LABEL, PIN)
        .map_err(|e| anyhow::anyhow!("{}", cardwright_processes::report(&e)))?;
    let (on_token, token_card) = installation(&token_dir, &Custody::Token(Arc::new(token))).await?;
    // Warm both up, then measure them one after the other, twice, and keep each one's better run.
    issue(&in_database, &database_card, 20).await?;
    issue(&on_token, &token_card, 20).await?;
    let mut database_rate: f64 = 0.0;
    let mut token_rate: f64 = 0.0;
    for _ in 0..2 {
        database_rate = database_rate.max(issue(&in_database, &database_card, certificates).await?);
        token_rate = token_rate.max(issue(&on_token, &token_card, certificates).await?);
    }
    in_database.store.close().await;
    on_token.store.close().await;
    println!(
        "bench pki: {certificates} certificates per key store, each signed by the CA and recorded in \
         its own transaction on SQLite (EC P-256, best of 2 runs, one thread)"
    );
    println!("  key store database (sealed in the database, signing in memory): {database_rate:.0} certificates/s");
    println!(
        "  key store pkcs11 ({}, signing on the token): {token_rate:.0} certificates/s",
        module.display()
    );
    Ok(())
}
