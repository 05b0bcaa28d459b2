//! Services the processes use: the option script runtime, the certificate authority and the
//! previews of cards. They know nothing of the processes' context; the context holds them.

pub mod pki;
pub mod previews;
pub mod scripts;
