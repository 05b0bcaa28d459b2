//! Services the processes use: the option script runtime and the certificate authority. They
//! know nothing of the processes' context; the context holds them.

pub mod pki;
pub mod scripts;
