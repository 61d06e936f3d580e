//! What the user looks through: `doctor` (the way to the server, step by step) and
//! `metrics` (burrow-local's counters).

pub mod doctor;
pub mod metrics;
