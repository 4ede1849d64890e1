//! GetCheckConfig and ChangeCheckConfig: the account's periodic check — the days and hours
//! (UTC) it runs in, and the standards and items it checks. The engine starts each due
//! window's run once, on whichever node sees it first (`engine::schedule`).

use std::collections::BTreeMap;

use catalog::Catalog;
use model::ApiError;
use serde_json::{json, Value};
use store::Schedule;

use super::check_results::vendor_codes;
use super::{db, known_check, Ctx};
use crate::params::Params;

fn current(ctx: &Ctx) -> Result<Schedule, ApiError> {
    Ok(ctx.store.schedule(ctx.account_id).map_err(db)?.unwrap_or_else(|| engine::default_schedule(ctx.catalog())))
}

/// GetCheckConfig: the schedule (the default, off, until one is set), every standard with
/// whether it is selected, and the items the schedule checks.
pub fn get_check_config(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let s = current(ctx)?;
    let catalog = ctx.catalog();
    let standards: Vec<Value> = catalog
        .structure()
        .iter()
        .map(|st| {
            json!({
                "Id": st.id, "ShowName": st.name.get(lang), "Type": st.standard_type,
                "Status": if s.standards.contains(&st.id) { "ON" } else { "OFF" },
            })
        })
        .collect();
    let selected: Vec<Value> = engine::selected_checks(&s, catalog)
        .into_iter()
        .filter_map(|id| catalog.get(id))
        .map(|c| json!({"CheckId": c.id, "SectionId": c.policy.section_id}))
        .collect();
    Ok(json!({
        "EnableAutoCheck": s.enabled,
        "EnableAddCheck": s.enable_add_check,
        "CycleDays": s.cycle_days,
        "StartTime": s.start_hour,
        "EndTime": s.end_hour,
        "Standards": standards,
        "SelectedChecks": selected,
    }))
}

/// Ids to add and to remove.
struct IdChanges {
    add: Vec<i64>,
    remove: Vec<i64>,
}

/// `{"AddIds": […], "RemoveIds": […]}`, a JSON string (the SDK's shrunk form).
fn id_changes(p: &Params, name: &str) -> Result<Option<IdChanges>, ApiError> {
    let Some(text) = p.str(name) else { return Ok(None) };
    let v: Value = serde_json::from_str(text).map_err(|_| ApiError::invalid_parameter(name))?;
    let ids = |key: &str| -> Result<Vec<i64>, ApiError> {
        match &v[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => a.iter().map(|x| x.as_i64().ok_or_else(|| ApiError::invalid_parameter(name))).collect(),
            _ => Err(ApiError::invalid_parameter(name)),
        }
    };
    if !v.is_object() {
        return Err(ApiError::invalid_parameter(name));
    }
    Ok(Some(IdChanges { add: ids("AddIds")?, remove: ids("RemoveIds")? }))
}

/// Selects items on their own: added (and no longer removed), or removed (and no longer added).
fn select(s: &mut Schedule, ids: impl IntoIterator<Item = i64>, add: bool) {
    for id in ids {
        let (to, from) = if add { (&mut s.added, &mut s.removed) } else { (&mut s.removed, &mut s.added) };
        from.retain(|x| *x != id);
        if !to.contains(&id) {
            to.push(id);
        }
    }
}

/// The items of each requirement of `ids`; an id no standard has is refused as `name`.
fn requirement_items(catalog: &Catalog, ids: &[i64], name: &str) -> Result<Vec<i64>, ApiError> {
    let tree = catalog.structure();
    let mut out = Vec::new();
    for id in ids {
        let r = tree
            .iter()
            .flat_map(|s| s.requirements.iter())
            .find(|r| r.id == *id)
            .ok_or_else(|| ApiError::invalid_parameter(name))?;
        out.extend(r.checks().map(|c| c.id));
    }
    Ok(out)
}

/// `AddedCheck` / `RemovedCheck`: items by id, each with its section when given (it must be
/// the item's own).
fn checks_of(ctx: &Ctx, p: &Params, name: &str) -> Result<Vec<i64>, ApiError> {
    p.objects(name)?
        .iter()
        .map(|o: &BTreeMap<String, String>| {
            let id: i64 =
                o.get("CheckId").and_then(|v| v.parse().ok()).ok_or_else(|| ApiError::invalid_parameter(name))?;
            let c = known_check(ctx, id)?;
            match o.get("SectionId").map(|v| v.parse::<i64>()) {
                None => Ok(id),
                Some(Ok(section)) if section == c.policy.section_id => Ok(id),
                Some(_) => Err(ApiError::invalid_parameter(&format!("{name}.SectionId"))),
            }
        })
        .collect()
}

/// The window of `StartTime` / `EndTime` (either alone names its pair), one of
/// [`engine::WINDOWS`].
fn window(p: &Params, s: &Schedule) -> Result<(u8, u8), ApiError> {
    let hour = |name: &str| -> Result<Option<u8>, ApiError> {
        p.int(name)?.map(|h| u8::try_from(h).map_err(|_| ApiError::invalid_parameter(name))).transpose()
    };
    let pair = match (hour("StartTime")?, hour("EndTime")?) {
        (None, None) => return Ok((s.start_hour, s.end_hour)),
        (Some(start), None) => engine::WINDOWS.iter().find(|w| w.0 == start).copied(),
        (None, Some(end)) => engine::WINDOWS.iter().find(|w| w.1 == end).copied(),
        (Some(start), Some(end)) => engine::WINDOWS.iter().find(|w| **w == (start, end)).copied(),
    };
    pair.ok_or_else(|| ApiError::invalid_parameter("StartTime"))
}

/// ChangeCheckConfig: changes what is given and keeps the rest. The item selection comes from
/// the first given of `Configure=all` / `SystemConfig=true` (every standard, no item on its
/// own), `ConfigStandardIds`, `ConfigRequirementIds`, then `AddedCheck` / `RemovedCheck`.
pub fn change_check_config(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let catalog = ctx.catalog();
    let mut s = current(ctx)?;
    vendor_codes(p)?;
    p.int_list("StandardIds")?; // deprecated by the SDK: accepted, not used
    if let Some(on) = p.bool("EnableAutoCheck")? {
        s.enabled = on;
    }
    if let Some(on) = p.bool("EnableAddCheck")? {
        s.enable_add_check = on;
    }
    let days = p.int_list("CycleDays")?;
    if !days.is_empty() {
        if days.iter().any(|d| !(1..=7).contains(d)) {
            return Err(ApiError::invalid_parameter("CycleDays"));
        }
        let mut days: Vec<u8> = days.into_iter().map(|d| d as u8).collect();
        days.sort();
        days.dedup();
        s.cycle_days = days;
    }
    (s.start_hour, s.end_hour) = window(p, &s)?;

    let every_standard: Vec<i64> = catalog.structure().iter().map(|st| st.id).collect();
    let reset = match p.str("Configure") {
        None => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::invalid_parameter("Configure")),
    } || p.bool("SystemConfig")? == Some(true);
    if reset {
        s.standards = every_standard;
        s.added.clear();
        s.removed.clear();
    } else if let Some(IdChanges { add, remove }) = id_changes(p, "ConfigStandardIds")? {
        if add.iter().chain(&remove).any(|id| !every_standard.contains(id)) {
            return Err(ApiError::invalid_parameter("ConfigStandardIds"));
        }
        // A standard's items follow it again, whatever was said of them one by one.
        let items_of = |ids: &[i64]| -> Vec<i64> {
            catalog.all().filter(|c| ids.contains(&c.policy.standard_id)).map(|c| c.id).collect()
        };
        let (joined, left) = (items_of(&add), items_of(&remove));
        s.removed.retain(|id| !joined.contains(id));
        s.added.retain(|id| !left.contains(id));
        s.standards.extend(add);
        s.standards.retain(|id| !remove.contains(id));
        s.standards.sort();
        s.standards.dedup();
    } else if let Some(IdChanges { add, remove }) = id_changes(p, "ConfigRequirementIds")? {
        let added = requirement_items(catalog, &add, "ConfigRequirementIds")?;
        let removed = requirement_items(catalog, &remove, "ConfigRequirementIds")?;
        select(&mut s, added, true);
        select(&mut s, removed, false);
    } else {
        let added = checks_of(ctx, p, "AddedCheck")?;
        let removed = checks_of(ctx, p, "RemovedCheck")?;
        select(&mut s, added, true);
        select(&mut s, removed, false);
    }
    s.added.sort();
    s.removed.sort();
    s.known = catalog.all().map(|c| c.id).collect();
    if p.bool("DryRun")? == Some(true) {
        return Ok(json!({}));
    }
    ctx.store.set_schedule(ctx.account_id, &s).map_err(db)?;
    // A window open now runs at once rather than at the next look.
    if s.enabled {
        if let Err(e) = ctx.engine.start_due_schedules(store::now_ms()) {
            tracing::warn!(error = %e, "due schedules could not be started; the engine tries again shortly");
        }
    }
    Ok(json!({}))
}
