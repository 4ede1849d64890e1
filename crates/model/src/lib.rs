//! Domain types shared by every posture crate.
//!
//! Everything here is pure: no I/O, no clocks, no async. Wire formats (PascalCase JSON, the
//! flat query) live in the `api` crate; this crate only knows the domain.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
mod error;
mod lang;
mod live;
mod params;
mod status;
mod vendor;

pub use action::{
    Apply, Change, Checker, ConnectorOp, Dialect, Document, Effect, LiveReader, OpOutput, PlannedChange, Snapshot,
    SnapshotItem, Step, LIVE, LIVE_ERROR, LIVE_SYSTEM, SOURCE,
};
pub use error::ApiError;
pub use lang::{Lang, Text};
pub use live::{Redis as RedisService, Services, Sshd as SshdService};
pub use params::{resolve as resolve_params, ParamError, ParamSpec, ParamType, RepairValues, UsageType};
pub use status::{CheckStatus, DimensionType, FailureThreshold, RunDetailStatus, RunStatus, TaskStatus, TaskType};
pub use vendor::{CloudAsset, Vendor};
