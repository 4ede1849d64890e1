//! The check items, as data, and the evaluator of their rules.
//!
//! Check items are TOML (`checks/*.toml` compiled in, plus any `*.toml` in a user directory).
//! A rule is a list of conditions on the normalised document a connector reads; a repair is a
//! list of [`model::Step`]s whose values may name a repair parameter.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod def;
mod eval;
mod structure;

pub use def::{
    Catalog, CheckDef, Condition, ConfigField, CustomConfig, CustomValues, LoadError, Op, Policy, RepairDef, Risk,
};
pub use eval::{evaluate, has_live_values, live_differences, Outcome};
pub use structure::{structure, Requirement, Section, Standard};
