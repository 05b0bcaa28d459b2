//! `cardwright bench encode`: Cardwright's chip encoding against the raw PKCS#11 work it needs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cardwright_cardsdk::encoder::{CardCertificate, KeyKind, KeySpec, Pkcs11Encoder};
use cardwright_pki::{builtin_profiles, CertificateAuthority, Subject};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, CertificateType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

const PIN: &str = "123456";
const PUK: &str = "12345678";

pub fn run(cards: u32, module: &Path) -> anyhow::Result<()> {
    let cards = cards.max(1);
    let scratch = tempfile::tempdir()?;
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        let tokens = scratch.path().join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = scratch.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        // Read by the module when it is first initialised, below.
        std::env::set_var("SOFTHSM2_CONF", &conf);
    }
    let now = chrono::Utc::now().timestamp();
    let ca = CertificateAuthority::create("Bench CA", now, 1)?;
    let profile = builtin_profiles(365).remove(0);
    let specs = [KeySpec {
        profile: profile.name.clone(),
        kind: KeyKind::EcP256,
    }];

    // Cardwright (token, PUK, PIN, key, certificate issued by the CA and written to the card)
    // and the raw PKCS#11 work alternate card by card, so both meet the same token count.
    let encoder = Pkcs11Encoder::new(module);
    let raw = RawWork::new(module)?;
    let (mut ours, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for n in 0..cards {
        let started = Instant::now();
        let serial = format!("CW-{n:06}");
        encoder.encode(&serial, PUK, PIN, None, &specs, &mut |key| {
            let der = ca
                .issue(
                    &key.spki,
                    &Subject {
                        common_name: serial.clone(),
                        email: None,
                    },
                    &profile,
                    &n.to_be_bytes(),
                    now,
                )
                .map_err(|e| {
                    cardwright_cardsdk::encoder::EncodeError::Certificate(e.to_string())
                })?;
            let (subject, _) = cardwright_pki::subject_and_serial(&der).map_err(|e| {
                cardwright_cardsdk::encoder::EncodeError::Certificate(e.to_string())
            })?;
            Ok(CardCertificate {
                key_id: key.id.clone(),
                label: key.profile.clone(),
                der,
                subject,
            })
        })?;
        ours += started.elapsed();
        let started = Instant::now();
        raw.card(n)?;
        raw_time += started.elapsed();
    }
    let raw = raw_time;
    let overhead = (ours.as_secs_f64() / raw.as_secs_f64() - 1.0) * 100.0;
    println!(
        "chip encoding on {}: {:.1} cards/s through Cardwright, {:.1} cards/s of raw PKCS#11 work (token, PIN, key, certificate): overhead {overhead:.1} % over {cards} cards",
        module.display(),
        f64::from(cards) / ours.as_secs_f64(),
        f64::from(cards) / raw.as_secs_f64(),
    );
    Ok(())
}

/// The same PKCS#11 calls Cardwright makes for a card, with a fixed certificate, nothing else.
struct RawWork {
    pkcs11: Pkcs11,
}

impl RawWork {
    fn new(module: &Path) -> anyhow::Result<Self> {
        // Whichever of the two handles initialises the module first, the other shares its state.
        let pkcs11 = Pkcs11::new(module).context("loading the module")?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => return Err(e.into()),
        }
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
