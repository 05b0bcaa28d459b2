//! The Card SDK: what a production station drives to make a card. Printers for now; layouts and
//! chip encoders join them behind the same station.

pub mod printer;

pub use printer::{PrintError, PrintJob, Printer, SimulatedPrinter, SpoolPrinter};
