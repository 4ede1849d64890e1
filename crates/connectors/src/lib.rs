//! Connectors talk to the real thing: a server's files (here), a cloud's API (the
//! `connector-aws` crate). One trait; the engine never knows which kind it drives.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod host;

pub mod cloud;

use model::{Change, ConnectorOp, Document, OpOutput, PlannedChange, Services, Snapshot, Step};

pub use cloud::{CloudAsset, CloudCredentials, CloudIdentity, CloudProvider, Discovery};

/// The scope of a change that may touch anything on its instance: it is serialised with every
/// other change of the instance.
pub const WHOLE_INSTANCE: &str = "*";

/// The instance a connector works on, as the store knows it.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// The instance id (the cloud resource id for cloud connectors).
    pub instance_id: String,
    /// The region it is in.
    pub region_id: String,
    /// Where it is: for the host connector, the filesystem root; for a cloud connector, what the
    /// discovery recorded.
    pub locator: String,
    /// The cloud account's keys, for instances found through one.
    pub credentials: Option<CloudCredentials>,
    /// For a host whose root is the running system: how its services are reached. A change
    /// then also takes effect on them (validated, applied, read back); None for a root that is
    /// only files (the demo fleet, an image), where no live step runs.
    pub live: Option<Services>,
}

/// Why a connector call failed. `code` becomes the task's `ErrorCode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorError {
    /// A stable code (`InstanceFreed`, `BackUpError`, `RepairError`, `ConfigChangedSinceRepair`, …).
    pub code: &'static str,
    /// What happened, for a person.
    pub message: String,
    /// The instance no longer exists.
    pub freed: bool,
    /// A transient failure (network, throttling, a service error 5xx): the same call may
    /// succeed later, so the engine retries the step under a later lease instead of failing.
    pub retryable: bool,
}

impl ConnectorError {
    /// A new error.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ConnectorError { code, message: message.into(), freed: false, retryable: false }
    }
    /// The instance is gone.
    pub fn freed(message: impl Into<String>) -> Self {
        ConnectorError { freed: true, ..ConnectorError::new("InstanceFreed", message) }
    }
    /// A failure worth retrying later.
    pub fn transient(code: &'static str, message: impl Into<String>) -> Self {
        ConnectorError { retryable: true, ..ConnectorError::new(code, message) }
    }
}

impl std::fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ConnectorError {}

/// One kind of asset. Every method is idempotent for the same inputs, so a step interrupted by a
/// crash can simply be run again.
pub trait Connector: Send + Sync {
    /// The asset kind (`host`), matched against check items' `asset`.
    fn kind(&self) -> &'static str;

    /// What `steps` change on one instance, as a serialisation key: two tasks on the same
    /// instance whose scopes are equal (or either is [`WHOLE_INSTANCE`]) never run together, and
    /// a rollback is refused while a later change of the same scope stands. Decided from the
    /// steps alone (no I/O), so it is known when a task is submitted.
    fn scope(&self, steps: &[Step]) -> String {
        let _ = steps;
        WHOLE_INSTANCE.to_string()
    }

    /// Reads the configuration into a normalised document.
    fn fetch(&self, target: &Target) -> Result<Document, ConnectorError>;

    /// Reads several instances, each as [`Connector::fetch`] would (a check run reads in
    /// batches: a connector may do a batch as one call).
    fn fetch_each(&self, targets: &[Target]) -> Vec<Result<Document, ConnectorError>> {
        targets.iter().map(|t| self.fetch(t)).collect()
    }

    /// What `change` would change on the instance, planned against it as it is now, exactly as
    /// [`Connector::apply`] would carry it out; changes nothing. Empty: the instance is already
    /// as the change would leave it.
    fn preview(&self, target: &Target, change: &Change) -> Result<Vec<PlannedChange>, ConnectorError> {
        let _ = (target, change);
        Err(ConnectorError::new(
            "PreviewNotSupported",
            format!("the {} connector cannot preview a change", self.kind()),
        ))
    }

    /// Captures everything the change will change, exactly as it is now.
    fn backup(&self, target: &Target, change: &Change) -> Result<Snapshot, ConnectorError>;

    /// Carries the change out, then records in `snapshot` the digest of each item after it.
    /// On failure nothing is left half-changed: items already changed are restored.
    fn apply(&self, target: &Target, change: &Change, snapshot: &mut Snapshot) -> Result<(), ConnectorError>;

    /// Puts the snapshot back (the change says how the restored state takes effect). Refuses (`ConfigChangedSinceRepair`) and changes nothing if any
    /// item changed since the repair recorded its digest (items without a recorded digest, from
    /// a repair interrupted before it was recorded, are restored unconditionally).
    fn restore(&self, target: &Target, change: &Change, snapshot: &Snapshot) -> Result<(), ConnectorError>;

    /// Whether every item is exactly as the snapshot holds it (verifies a rollback).
    fn matches(&self, target: &Target, snapshot: &Snapshot) -> Result<bool, ConnectorError>;
}

/// Runs one step's work on a connector: the engine's workers for the instances they reach, and
/// an agent for its own server, run the same function.
pub fn execute(c: &dyn Connector, t: &Target, change: &Change, op: ConnectorOp) -> Result<OpOutput, ConnectorError> {
    Ok(match op {
        ConnectorOp::Backup => OpOutput::Snapshot { snapshot: c.backup(t, change)? },
        ConnectorOp::Apply { mut snapshot } => {
            c.apply(t, change, &mut snapshot)?;
            OpOutput::Snapshot { snapshot }
        }
        ConnectorOp::Restore { snapshot } => {
            c.restore(t, change, &snapshot)?;
            OpOutput::Done
        }
        ConnectorOp::Fetch => OpOutput::Document { document: c.fetch(t)? },
        ConnectorOp::MatchesAndFetch { snapshot } => {
            OpOutput::Matches { matches: c.matches(t, &snapshot)?, document: c.fetch(t)? }
        }
    })
}
