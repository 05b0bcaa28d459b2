//! The Card SDK: what a production station drives to make a card. Printers for now; layouts and
//! chip encoders join them behind the same station.

pub mod encoder;
pub mod ipp_printer;
pub mod lanes;
pub mod layout;
pub mod limits;
pub mod printer;
mod render;

pub use ipp_printer::IppPrinter;
pub use lanes::Lane;
pub use layout::{check_layout, CardArtwork, CardFace, LayoutError, Side};
pub use printer::{PrintError, PrintJob, Printer, SimulatedPrinter, SpoolPrinter};
