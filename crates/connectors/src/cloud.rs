//! Cloud accounts: what a provider (one per vendor) does besides the per-resource [`Connector`]s
//! it brings: validate a pair of keys and discover the resources they can see.
//!
//! [`Connector`]: crate::Connector

pub use model::CloudAsset;
use model::Vendor;

use crate::ConnectorError;

/// A cloud account's keys. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CloudCredentials {
    /// The AccessKey id (AWS: `AKIA…`).
    pub secret_id: String,
    /// The AccessKey secret.
    pub secret_key: String,
}

impl std::fmt::Debug for CloudCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudCredentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Who a pair of keys belongs to, as the provider answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudIdentity {
    /// The provider's account id (AWS: 12 digits).
    pub account_uid: String,
    /// The user or role the keys belong to (AWS: the caller's ARN).
    pub user_name: String,
}

/// What one discovery found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Every resource found.
    pub assets: Vec<CloudAsset>,
    /// The regions whose listing completed: instances of this account in a region missing here
    /// are kept as they are (a failed listing must not release them).
    pub complete_regions: Vec<String>,
    /// What failed, for the account's status message.
    pub errors: Vec<String>,
}

/// A cloud provider: one per vendor.
pub trait CloudProvider: Send + Sync {
    /// The vendor its accounts belong to.
    fn vendor(&self) -> Vendor;

    /// The regions an account may select (ListCloudVendorRegions).
    fn regions(&self) -> Vec<String>;

    /// Checks the keys with a real call that needs no permission (AWS: STS GetCallerIdentity).
    fn verify(&self, credentials: &CloudCredentials, regions: &[String]) -> Result<CloudIdentity, ConnectorError>;

    /// Lists the resources the keys can see in `regions`.
    fn discover(&self, credentials: &CloudCredentials, regions: &[String]) -> Discovery;
}
