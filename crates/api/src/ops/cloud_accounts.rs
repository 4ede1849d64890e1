//! Cloud accounts: AddCloudVendorAccountAK, DescribeCloudVendorAccountAKList,
//! ModifyCloudVendorAccountAK, DeleteCloudVendorAccountAK, ListCloudVendorRegions.
//!
//! Keys are checked with a real call before they are stored (or replaced); the secret is sealed
//! at rest and no answer carries it. The resources an account's keys see become instances at
//! the next full check (SubmitCheck).

use connectors::{CloudCredentials, CloudProvider, ConnectorError};
use model::{ApiError, Vendor};
use serde_json::{json, Value};
use store::{CloudAccount, CloudAccountChange, NewCloudAccount, StoreError};

use super::{db, page_info, Ctx};
use crate::params::Params;

/// `AuthModules` posture knows, with their display names.
const MODULES: &[(&str, &str, &str)] = &[
    (
        "CSPM",
        "Cloud product configuration check",
        "Security groups, S3 buckets, IAM password policy, EBS defaults, EC2 metadata options",
    ),
    ("HOST", "Host", "EC2 instances"),
    ("SIEM", "CloudSiem", ""),
    ("TRIAL", "Log audit", ""),
];

fn provider<'a>(ctx: &'a Ctx, vendor: Option<&str>) -> Result<&'a std::sync::Arc<dyn CloudProvider>, ApiError> {
    let name = vendor.ok_or_else(|| ApiError::missing_parameter("Vendor"))?;
    Vendor::parse(name).and_then(|v| ctx.engine.provider(v)).ok_or_else(|| ApiError::cloud_vendor_not_supported(name))
}

fn modules(p: &Params) -> Result<Vec<String>, ApiError> {
    p.enum_list("AuthModules", |m| MODULES.iter().any(|(code, ..)| *code == m))
}

fn regions(p: &Params, provider: &dyn CloudProvider) -> Result<Vec<String>, ApiError> {
    let known = provider.regions();
    let mut list = p.enum_list("Regions", |r| known.iter().any(|k| k == r))?;
    list.dedup();
    Ok(list)
}

fn text(p: &Params, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match p.str(name) {
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => Err(ApiError::invalid_parameter(name)),
        v => Ok(v.map(str::to_string)),
    }
}

/// Verifies keys with the vendor; its refusal and its unavailability are told apart.
fn verify(
    provider: &dyn CloudProvider,
    keys: &CloudCredentials,
    regions: &[String],
) -> Result<(String, String), ApiError> {
    match provider.verify(keys, regions) {
        Ok(id) => Ok((id.account_uid, id.user_name)),
        Err(ConnectorError { retryable: true, message, .. }) => Err(ApiError::cloud_unavailable(&message)),
        Err(e) => Err(ApiError::cloud_access_key_invalid(&e.message)),
    }
}

fn account_json(a: &CloudAccount) -> Value {
    let modules: Vec<Value> = a
        .modules
        .iter()
        .map(|m| {
            let (_, disp, assets) = MODULES.iter().find(|(code, ..)| code == m).copied().unwrap_or((m, m, ""));
            json!({
                "Module": m,
                "ModuleDisp": disp,
                "ModuleAssetType": assets,
                "ModuleServiceStatus": a.service_status,
                "ModuleStatement": "",
                "Message": a.message,
            })
        })
        .collect();
    json!({
        "AuthId": a.auth_id,
        "AkType": a.ak_type,
        "AuthModules": modules,
        "CtdrCloudUserId": "",
        "ExtendInfo": "",
        "Message": a.message,
        "SecretId": a.secret_id,
        "ServiceStatus": a.service_status,
        "Status": a.status,
        "Vendor": a.vendor,
        "VendorAuthAlias": a.alias,
        "VendorUid": a.vendor_uid,
        "VendorUserName": a.vendor_user,
        "Regions": a.regions,
        "Domain": a.domain,
    })
}

/// Starts a check of the vendor's items over the account, whose first step discovers the
/// resources of its cloud accounts: a registered account's resources appear without a
/// SubmitCheck. The run is durable (any node's workers carry it out); if it cannot be started,
/// the next check or scheduled run discovers them.
fn discover_now(ctx: &Ctx, vendor: model::Vendor) {
    let items: Vec<i64> = ctx.catalog().all().filter(|c| c.vendor() == Some(vendor)).map(|c| c.id).collect();
    // No item judges this vendor's resources (an empty list would mean every item).
    if items.is_empty() {
        return;
    }
    match ctx.store.create_run(ctx.account_id, "CHECK_POLICY", DISCOVERY_SOURCE, &items, &[]) {
        Ok(_) => ctx.engine.wake(),
        Err(e) => {
            tracing::warn!(error = %e, "the check of a new cloud account could not be started; the next check discovers it")
        }
    }
}

/// The `TaskSource` of the check a cloud account's registration starts.
pub const DISCOVERY_SOURCE: &str = "CLOUD_ACCOUNT";

/// AddCloudVendorAccountAK.
pub fn add_cloud_vendor_account_ak(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let provider = provider(ctx, p.str("Vendor"))?;
    let ak_type = p.str("AkType").unwrap_or("primary");
    if !matches!(ak_type, "primary" | "sub") {
        return Err(ApiError::invalid_parameter("AkType"));
    }
    let secret_id =
        text(p, "SecretId", 256)?.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::missing_parameter("SecretId"))?;
    let secret_key = text(p, "SecretKey", 1024)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::missing_parameter("SecretKey"))?;
    let regions = regions(p, provider.as_ref())?;
    if regions.is_empty() {
        return Err(ApiError::missing_parameter("Regions"));
    }
    let mut modules = modules(p)?;
    if modules.is_empty() {
        modules.push("CSPM".into());
    }
    let keys = CloudCredentials { secret_id: secret_id.clone(), secret_key: secret_key.clone() };
    let (vendor_uid, vendor_user) = verify(provider.as_ref(), &keys, &regions)?;
    let new = NewCloudAccount {
        vendor: provider.vendor().name().to_string(),
        ak_type: ak_type.to_string(),
        secret_id,
        secret_key,
        alias: text(p, "VendorAuthAlias", 128)?.unwrap_or_default(),
        domain: text(p, "Domain", 32)?.unwrap_or_else(|| "global".into()),
        regions,
        modules,
        vendor_uid,
        vendor_user,
    };
    match ctx.store.add_cloud_account(ctx.account_id, &new) {
        Ok(a) => {
            discover_now(ctx, provider.vendor());
            Ok(json!({"Data": account_json(&a)}))
        }
        Err(StoreError::Conflict) => Err(ApiError::cloud_account_exists(&new.secret_id)),
        Err(e) => Err(db(e)),
    }
}

/// `AuthIds`: a comma-separated list of ids.
fn auth_ids(p: &Params) -> Result<Vec<i64>, ApiError> {
    p.str("AuthIds")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| ApiError::invalid_parameter("AuthIds")))
        .collect()
}

/// DescribeCloudVendorAccountAKList.
pub fn describe_cloud_vendor_account_ak_list(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let ids = auth_ids(p)?;
    let vendor = match p.str("Vendor") {
        None => None,
        Some(v) => Some(Vendor::parse(v).ok_or_else(|| ApiError::invalid_parameter("Vendor"))?.name()),
    };
    let status = p.int("Status")?;
    let alias = p.str("VendorAuthAlias");
    let (page, size, offset) = p.page(20, 100)?;
    let all: Vec<CloudAccount> = ctx
        .store
        .cloud_accounts(ctx.account_id)
        .map_err(db)?
        .into_iter()
        .filter(|a| ids.is_empty() || ids.contains(&a.auth_id))
        .filter(|a| vendor.is_none_or(|v| v == a.vendor))
        .filter(|a| status.is_none_or(|s| s == a.status))
        .filter(|a| alias.is_none_or(|x| a.alias.contains(x)))
        .collect();
    let list: Vec<Value> = all.iter().skip(offset as usize).take(size as usize).map(account_json).collect();
    Ok(json!({"PageInfo": page_info(list.len(), page, size, all.len() as i64), "CloudVendorAccountAKs": list}))
}

/// ModifyCloudVendorAccountAK. New keys (SecretId and SecretKey together, one AuthId) are
/// verified before they replace the old ones.
pub fn modify_cloud_vendor_account_ak(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let ids = auth_ids(p)?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("AuthIds"));
    }
    let accounts: Vec<CloudAccount> = ids
        .iter()
        .map(|id| {
            ctx.store
                .cloud_account(ctx.account_id, *id)
                .map_err(db)?
                .ok_or_else(|| ApiError::cloud_account_not_found(&id.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let provider = provider(ctx, Some(&accounts[0].vendor))?;
    let status = p.int("Status")?;
    if status.is_some_and(|s| s != 0 && s != 1) {
        return Err(ApiError::invalid_parameter("Status"));
    }
    let regions = Some(regions(p, provider.as_ref())?).filter(|r| !r.is_empty());
    let mut change = CloudAccountChange {
        alias: text(p, "VendorAuthAlias", 128)?,
        domain: text(p, "Domain", 32)?,
        regions,
        modules: Some(modules(p)?).filter(|m| !m.is_empty()),
        status,
        keys: None,
    };
    match (text(p, "SecretId", 256)?.filter(|s| !s.is_empty()), text(p, "SecretKey", 1024)?.filter(|s| !s.is_empty())) {
        (None, None) => {}
        (Some(id), Some(secret)) if ids.len() == 1 => {
            let keys = CloudCredentials { secret_id: id.clone(), secret_key: secret.clone() };
            let regions = change.regions.clone().unwrap_or_else(|| accounts[0].regions.clone());
            let (uid, user) = verify(provider.as_ref(), &keys, &regions)?;
            change.keys = Some((id, secret, uid, user));
        }
        (Some(_), Some(_)) => return Err(ApiError::invalid_parameter("AuthIds")),
        (None, Some(_)) => return Err(ApiError::missing_parameter("SecretId")),
        (Some(_), None) => return Err(ApiError::missing_parameter("SecretKey")),
    }
    let mut first = None;
    for id in ids {
        let changed = match ctx.store.modify_cloud_account(ctx.account_id, id, &change) {
            Ok(Some(a)) => a,
            Ok(None) => return Err(ApiError::cloud_account_not_found(&id.to_string())),
            Err(StoreError::Conflict) => {
                return Err(ApiError::cloud_account_exists(change.keys.as_ref().map_or("", |k| k.0.as_str())))
            }
            Err(e) => return Err(db(e)),
        };
        first.get_or_insert(changed);
    }
    Ok(json!({"Data": first.as_ref().map(account_json)}))
}

/// DeleteCloudVendorAccountAK. With `AuthModules`, only those modules are removed (the account
/// goes when none is left); its instances are released.
pub fn delete_cloud_vendor_account_ak(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id = p.required_int("AuthId")?;
    let Some(account) = ctx.store.cloud_account(ctx.account_id, id).map_err(db)? else {
        return Err(ApiError::cloud_account_not_found(&id.to_string()));
    };
    let remove = modules(p)?;
    let left: Vec<String> =
        account.modules.iter().filter(|m| !remove.is_empty() && !remove.contains(m)).cloned().collect();
    if left.is_empty() {
        ctx.store.delete_cloud_account(ctx.account_id, id).map_err(db)?;
    } else {
        let change = CloudAccountChange { modules: Some(left), ..Default::default() };
        ctx.store.modify_cloud_account(ctx.account_id, id, &change).map_err(db)?;
    }
    Ok(json!({}))
}

/// ListCloudVendorRegions. `Selected` is 1 for a region one of the caller's accounts of the
/// vendor covers.
pub fn list_cloud_vendor_regions(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let provider = provider(ctx, p.str("Vendor"))?;
    let vendor = provider.vendor().name();
    let selected: Vec<String> = ctx
        .store
        .cloud_accounts(ctx.account_id)
        .map_err(db)?
        .into_iter()
        .filter(|a| a.vendor == vendor)
        .flat_map(|a| a.regions)
        .collect();
    let data: Vec<Value> = provider
        .regions()
        .iter()
        .map(|r| {
            let area = r.split('-').next().unwrap_or("");
            json!({"RegionId": r, "Area": area, "Selected": i64::from(selected.contains(r)), "Disable": 0})
        })
        .collect();
    Ok(
        json!({"Success": true, "Code": "200", "HttpStatusCode": 200, "Message": "successful", "Count": data.len(), "Data": data}),
    )
}
