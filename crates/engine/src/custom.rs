//! An account's view of the catalog: an item whose custom configs the account set judges by
//! its values (ChangeCheckCustomConfig), in check runs and in the verification of repairs.

use std::borrow::Cow;
use std::collections::HashMap;

use catalog::{Catalog, CheckDef};

use crate::Engine;

/// The items of the catalog, those the account customised as it set them.
pub(crate) struct AccountChecks {
    customised: HashMap<i64, CheckDef>,
}

impl AccountChecks {
    /// The item as the account sees it.
    pub(crate) fn get<'a>(&'a self, catalog: &'a Catalog, id: i64) -> Option<&'a CheckDef> {
        self.customised.get(&id).or_else(|| catalog.get(id))
    }
}

impl Engine {
    /// The account's view of every item (one read of its values).
    pub(crate) fn account_checks(&self, account_id: &str) -> store::Result<AccountChecks> {
        let values = self.store.custom_values(account_id)?;
        let customised = values
            .iter()
            .filter_map(|(id, v)| match self.catalog.get(*id)?.customised(Some(v)) {
                Cow::Owned(c) => Some((*id, c)),
                Cow::Borrowed(_) => None,
            })
            .collect();
        Ok(AccountChecks { customised })
    }

    /// One item as the account sees it.
    pub(crate) fn account_check(&self, account_id: &str, check_id: i64) -> store::Result<Option<Cow<'_, CheckDef>>> {
        let Some(check) = self.catalog.get(check_id) else { return Ok(None) };
        let values = self.store.custom_values(account_id)?;
        Ok(Some(check.customised(values.get(&check_id))))
    }
}
