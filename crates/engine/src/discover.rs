//! Cloud inventory: before a full check, each enabled cloud account of the posture account is
//! listed through its vendor's provider, and what it found becomes (or stays) an instance.

use connectors::CloudCredentials;

use crate::Engine;

impl Engine {
    /// Refreshes the instances of every enabled cloud account of `account_id` that has the
    /// `CSPM` module. A provider's
    /// failure is recorded on the cloud account (`ServiceStatus` 1 and its message); the
    /// instances of regions that could not be listed are left as they were.
    pub(crate) fn discover(&self, account_id: &str) -> store::Result<()> {
        for account in self.store.cloud_accounts(account_id)? {
            let provider = self.providers.iter().find(|p| p.vendor().name() == account.vendor);
            // Configuration assessment is the CSPM module; an account without it is not listed.
            let assessed = account.status == 0 && account.modules.iter().any(|m| m == "CSPM");
            let (Some(provider), true) = (provider, assessed) else { continue };
            let Some((_, secret_key)) = self.store.cloud_keys(account_id, account.auth_id)? else { continue };
            let keys = CloudCredentials { secret_id: account.secret_id.clone(), secret_key };
            let found = provider.discover(&keys, &account.regions);
            tracing::info!(
                cloud_account = account.auth_id,
                found = found.assets.len(),
                errors = found.errors.len(),
                "cloud discovery"
            );
            self.store.sync_cloud_instances(
                account_id,
                account.auth_id,
                provider.vendor(),
                &found.assets,
                &found.complete_regions,
            )?;
            let (status, message) =
                if found.errors.is_empty() { (0, String::new()) } else { (1, found.errors.join("; ")) };
            self.store.set_cloud_account_health(account.auth_id, status, &message)?;
        }
        Ok(())
    }
}
