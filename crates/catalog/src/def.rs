use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use model::{Document, ParamSpec, ParamType, Step, Text, LIVE, SOURCE};

/// The source shown for a value that no file sets: the software's default applies.
pub const NOT_SET: &str = "default: not set in any file";
use serde::Deserialize;

/// Risk level of a check item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Risk {
    /// `HIGH`
    #[serde(rename = "HIGH")]
    High,
    /// `MEDIUM`
    #[serde(rename = "MEDIUM")]
    Medium,
    /// `LOW`
    #[serde(rename = "LOW")]
    Low,
}

impl Risk {
    /// Upper case, as ListCheckResult spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Risk::High => "HIGH",
            Risk::Medium => "MEDIUM",
            Risk::Low => "LOW",
        }
    }
    /// Lower case, as ListOperationTask spells it.
    pub fn lower(self) -> &'static str {
        match self {
            Risk::High => "high",
            Risk::Medium => "medium",
            Risk::Low => "low",
        }
    }
}

/// Where a check item sits in a standard (`CheckPolicies`).
#[derive(Clone, Debug, Deserialize)]
#[allow(missing_docs)]
pub struct Policy {
    /// The standard's type (`Types` filter): `COMPLIANCE`, `RISK`, …
    #[serde(rename = "type")]
    pub standard_type: String,
    pub standard_id: i64,
    pub standard: Text,
    pub requirement_id: i64,
    pub requirement: Text,
    pub section_id: i64,
    pub section: Text,
}

/// A comparison a rule makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The value equals `value`.
    Eq,
    /// The value is one of `values` (case-insensitive: config keywords are).
    In,
    /// The value, an integer, is ≤ `value`.
    Le,
    /// The value, an integer, is ≥ `value`.
    Ge,
    /// The value, a duration in sshd's format (`90`, `2m`, `1h30m`), is ≤ `value` seconds.
    LeDuration,
    /// The value, an octal mode, grants nothing beyond the octal `value`.
    ModeAtMost,
    /// The value lists listen addresses, and none of them is a wildcard (absent fails).
    NoWildcardAddr,
    /// The key is present with a non-empty value.
    Present,
    /// The key is absent (a package that is not installed).
    Absent,
    /// The value, a list separated by commas or spaces, holds every one of `values`
    /// (case-insensitive): mount options such as `nodev`.
    AllOf,
    /// The value, a list separated by commas or spaces, holds none of `values`
    /// (case-insensitive): no weak cipher, no `none` banner.
    NoneOf,
    /// The value, an octal mask (a umask), has every bit of the octal `value` set: it masks at
    /// least as much.
    MaskAtLeast,
    /// The value, numbers separated by colons (sshd's `MaxStartups 10:30:60`), is field by field
    /// at most `value`'s (a missing field counts as the first).
    FieldsLe,
    /// The value, Linux audit rules (one per line), records at least what each of `values` does
    /// (see the `audit` module for what counts).
    AuditRules,
}

impl Op {
    /// The name a catalog file spells it with.
    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::In => "in",
            Op::Le => "le",
            Op::Ge => "ge",
            Op::LeDuration => "le_duration",
            Op::ModeAtMost => "mode_at_most",
            Op::NoWildcardAddr => "no_wildcard_addr",
            Op::Present => "present",
            Op::Absent => "absent",
            Op::AllOf => "all_of",
            Op::NoneOf => "none_of",
            Op::MaskAtLeast => "mask_at_least",
            Op::FieldsLe => "fields_le",
            Op::AuditRules => "audit_rules",
        }
    }
}

/// One condition of a rule.
#[derive(Clone, Debug, Deserialize)]
pub struct Condition {
    /// The document key.
    pub key: String,
    /// The value assumed when the key is absent (the software's own default).
    #[serde(default)]
    pub default: Option<String>,
    /// The comparison.
    pub op: Op,
    /// The operand of single-value comparisons.
    #[serde(default)]
    pub value: Option<String>,
    /// The operand of `in`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A current value shown in `InstanceInfo.Config`.
#[derive(Clone, Debug, Deserialize)]
pub struct ConfigField {
    /// `Name`.
    pub name: String,
    /// The document key it comes from.
    pub key: String,
    /// Shown when the key is absent.
    #[serde(default)]
    pub default: Option<String>,
    /// `ShowName`.
    pub show_name: Text,
}

/// A threshold of an item that an account may set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomConfig {
    /// `Name`, unique within the item.
    pub name: String,
    /// `ShowName`.
    pub show_name: Text,
    /// The value's type (`TypeDefine`).
    #[serde(rename = "type_define")]
    pub kind: ParamType,
    /// `DefaultValue`: what the rule uses until the account sets a value.
    pub default: String,
}

/// An account's values of an item's custom configs, by name.
pub type CustomValues = BTreeMap<String, String>;

/// How a check item is repaired.
#[derive(Clone, Debug, Deserialize)]
pub struct RepairDef {
    /// 1 repair + rollback, 2 repair only.
    pub support_type: i64,
    /// A service restart is needed for the change to take effect.
    pub reset: bool,
    /// The steps as shown to users (`FlowStep`).
    pub flow: Vec<Text>,
    /// Repair parameters.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// What is changed; values may contain `{Param}`, `{Param.ip}`, `{Param.port}`.
    pub steps: Vec<Step>,
    /// How the change takes effect on a live system (host items; required for them).
    #[serde(default)]
    pub effect: Option<model::Effect>,
}

/// One check item.
#[derive(Clone, Debug, Deserialize)]
pub struct CheckDef {
    /// `CheckId`.
    pub id: i64,
    /// A stable slug.
    pub key: String,
    /// `CheckShowName`.
    pub name: Text,
    /// Risk level.
    pub risk: Risk,
    /// The connector kind that reads the instances it applies to.
    #[serde(default = "host")]
    pub asset: String,
    /// `InstanceType`.
    #[serde(default = "ecs")]
    pub instance_type: String,
    /// `InstanceSubType`.
    #[serde(default = "instance")]
    pub instance_sub_type: String,
    /// The item applies only to instances whose document has this key.
    #[serde(default)]
    pub applies_if: Option<String>,
    /// What the risk is.
    pub description: Text,
    /// How to fix it by hand.
    pub solution: Text,
    /// Further help.
    pub assist: Text,
    /// Its place in a standard.
    pub policy: Policy,
    /// The CIS recommendation it checks (`5.2.7`), in the benchmark its file names.
    #[serde(default)]
    pub cis: Option<String>,
    /// The CIS benchmark (and version) of `cis`: the file's `benchmark`.
    #[serde(skip)]
    pub benchmark: String,
    /// All conditions must hold for PASS (with the default values of `custom`: see
    /// [`CheckDef::customised`] for an account's).
    pub rule: Vec<Condition>,
    /// The rule as written, where a value may name a custom config as `{Name}`.
    #[serde(skip)]
    pub rule_template: Vec<Condition>,
    /// Thresholds an account may set (`CustomConfigs`, ChangeCheckCustomConfig), each named
    /// as `{Name}` in the rule's values and, when a repair parameter has its name, that
    /// parameter's default.
    #[serde(default)]
    pub custom: Vec<CustomConfig>,
    /// Current values shown per instance.
    #[serde(default)]
    pub config: Vec<ConfigField>,
    /// How it is repaired, if it is.
    #[serde(default)]
    pub repair: Option<RepairDef>,
}

/// A value an item shows: its field's name, the suffix of the kind of value (`""`,
/// `" (source)"` or `" (live)"`) and the value.
type ShownEntry<'a> = (&'a str, &'static str, &'a str);

/// The name an entry is shown under, as bytes (compared without joining the two parts).
fn shown_key<'a>(e: &ShownEntry<'a>) -> impl Iterator<Item = u8> + 'a {
    e.0.bytes().chain(e.1.bytes())
}

fn host() -> String {
    "host".into()
}
fn ecs() -> String {
    "ECS".into()
}
fn instance() -> String {
    "INSTANCE".into()
}

impl CheckDef {
    /// The current values of the settings the item shows, as a document has them (the
    /// software's default when unset): name → value; with where each came from, as
    /// `name (source)` (the file and line that set it, or that nothing did and the default
    /// applies); on a live system also the value in effect, as `name (live)`.
    pub fn shown_values(&self, doc: &Document) -> BTreeMap<String, String> {
        let live = crate::eval::has_live_values(doc);
        self.shown_entries(doc, live).map(|(name, suffix, v)| (format!("{name}{suffix}"), v.to_string())).collect()
    }

    /// [`CheckDef::shown_values`] as the JSON object a result stores, written straight from the
    /// document (a check writes one per result: no map and no copy of each value). `live`:
    /// whether the document holds values in effect (looked for once per document).
    pub fn shown_json(&self, doc: &Document, live: bool) -> String {
        use serde::ser::{SerializeMap, Serializer};
        let mut entries: Vec<ShownEntry> = self.shown_entries(doc, live).collect();
        entries.sort_by(|a, b| shown_key(a).cmp(shown_key(b)));
        let mut out = Vec::with_capacity(64);
        let mut json = serde_json::Serializer::new(&mut out);
        let written = (|| {
            let mut map = json.serialize_map(None)?;
            for (i, e) in entries.iter().enumerate() {
                // Of equal names the last counts, as in the map.
                if !entries.get(i + 1).is_some_and(|next| shown_key(next).eq(shown_key(e))) {
                    map.serialize_entry(&format_args!("{}{}", e.0, e.1), e.2)?;
                }
            }
            map.end()
        })();
        // Strings written to memory: nothing can fail.
        written.ok().and_then(|()| String::from_utf8(out).ok()).unwrap_or_else(|| "{}".into())
    }

    /// The entries of [`CheckDef::shown_values`], in the order of the item's fields.
    fn shown_entries<'a>(&'a self, doc: &'a Document, live: bool) -> impl Iterator<Item = ShownEntry<'a>> {
        self.config.iter().flat_map(move |f| {
            let (value, source) = match (doc.get(&f.key), &f.default) {
                (Some(v), _) => (Some(v.as_str()), crate::eval::get_prefixed(doc, SOURCE, &f.key).map(String::as_str)),
                (None, Some(default)) => (Some(default.as_str()), Some(NOT_SET)),
                (None, None) => (None, None),
            };
            let in_effect = live.then(|| crate::eval::get_prefixed(doc, LIVE, &f.key)).flatten();
            let name = f.name.as_str();
            [(value, ""), (source, " (source)"), (in_effect.map(String::as_str), " (live)")]
                .into_iter()
                .filter_map(move |(v, suffix)| v.map(|v| (name, suffix, v)))
        })
    }

    /// How the item's repair takes effect on a live system (None: no repair, or a cloud item).
    pub fn effect(&self) -> Option<model::Effect> {
        self.repair.as_ref().and_then(|r| r.effect)
    }

    /// The change a repair with these values makes: its steps and how they take effect.
    pub fn change(&self, params: &[(String, String)]) -> model::Change {
        model::Change { steps: self.render_steps(params), effect: self.effect() }
    }

    /// `RepairSupportType`: 1, 2, or 0 when the item cannot be repaired.
    pub fn repair_support_type(&self) -> i64 {
        self.repair.as_ref().map_or(0, |r| r.support_type)
    }

    /// The item as an account sees it: its rule with the account's custom values (each
    /// default where it set none), and repair parameters named like a custom config defaulting
    /// to its value. Borrowed when the account set nothing that differs from the defaults.
    pub fn customised(&self, values: Option<&CustomValues>) -> std::borrow::Cow<'_, CheckDef> {
        let set: Vec<(String, String)> = self
            .custom
            .iter()
            .filter_map(|c| values?.get(&c.name).filter(|v| **v != c.default).map(|v| (c.name.clone(), v.clone())))
            .collect();
        if set.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut item = self.clone();
        item.rule = self.rule_with(&set);
        if let Some(r) = &mut item.repair {
            for p in &mut r.params {
                if let Some((_, v)) = set.iter().find(|(n, _)| *n == p.name) {
                    p.default = Some(v.clone());
                }
            }
        }
        std::borrow::Cow::Owned(item)
    }

    /// Why a repair value given for the parameter `name` would not meet this item's own rule
    /// (with the thresholds it has: call it on [`CheckDef::customised`]'s item), where the rule
    /// compares against the custom config of that name: a repair that writes it would fail its
    /// verification.
    pub fn looser_than_threshold(&self, name: &str, value: &str) -> Option<String> {
        let placeholder = format!("{{{name}}}");
        self.rule_template.iter().zip(&self.rule).find_map(|(template, rule)| {
            let names_it = template.value.as_deref() == Some(placeholder.as_str());
            let fails = names_it && !crate::eval::holds(rule, Some(&value.to_string()));
            fails.then(|| {
                let threshold = rule.value.as_deref().unwrap_or_default();
                format!("{value} does not meet the threshold this check judges by ({} {threshold})", rule.op.name())
            })
        })
    }

    /// The rule's template with `values` (then the defaults) in place of `{Name}`.
    fn rule_with(&self, values: &[(String, String)]) -> Vec<Condition> {
        let defaults: Vec<(String, String)> = self.custom.iter().map(|c| (c.name.clone(), c.default.clone())).collect();
        let fill = |v: &str| substitute(&substitute(v, values), &defaults);
        self.rule_template
            .iter()
            .map(|c| Condition {
                value: c.value.as_deref().map(fill),
                values: c.values.iter().map(|v| fill(v)).collect(),
                ..c.clone()
            })
            .collect()
    }

    /// The vendor whose resources the item judges: None for host items (servers on any vendor).
    pub fn vendor(&self) -> Option<model::Vendor> {
        self.asset.starts_with("aws.").then_some(model::Vendor::Aws)
    }

    /// The rule as one line (`ListCheckItems.CheckRule`): its conditions joined by `and`, each
    /// as `key op operand`, with the value assumed when the key is absent.
    pub fn rule_text(&self) -> String {
        let conditions: Vec<String> = self
            .rule
            .iter()
            .map(|c| {
                let operand = match (&c.value, c.values.as_slice()) {
                    (Some(v), _) => format!(" {v}"),
                    (None, []) => String::new(),
                    (None, vs) => format!(" [{}]", vs.join(", ")),
                };
                let default = c.default.as_ref().map(|d| format!(" (absent: {d})")).unwrap_or_default();
                format!("{} {}{operand}{default}", c.key, c.op.name())
            })
            .collect();
        conditions.join(" and ")
    }

    /// Whether a repair of this item can be rolled back.
    pub fn supports_rollback(&self) -> bool {
        self.repair_support_type() == 1
    }

    /// The steps with the resolved parameter values substituted.
    pub fn render_steps(&self, params: &[(String, String)]) -> Vec<Step> {
        let Some(repair) = &self.repair else {
            return Vec::new();
        };
        repair
            .steps
            .iter()
            .map(|s| match s {
                Step::SetDirective { dialect, file, key, value } => Step::SetDirective {
                    dialect: *dialect,
                    file: file.clone(),
                    key: key.clone(),
                    value: substitute(value, params),
                },
                Step::SetMode { file, mode } => Step::SetMode { file: file.clone(), mode: substitute(mode, params) },
                Step::Cloud { action, args } => Step::Cloud {
                    action: action.clone(),
                    args: args.iter().map(|(k, v)| (k.clone(), substitute(v, params))).collect(),
                },
            })
            .collect()
    }
}

/// Whether `v` holds `{Name}`: a brace, a letter, then letters and digits up to a brace.
fn names_a_config(v: &str) -> bool {
    v.split('{').skip(1).any(|rest| {
        rest.split_once('}').is_some_and(|(name, _)| {
            name.starts_with(|c: char| c.is_ascii_alphabetic()) && name.chars().all(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// Replaces `{Name}`, `{Name.ip}` and `{Name.port}` with the parameter's value.
fn substitute(template: &str, params: &[(String, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
        if let Ok(addr) = value.parse::<SocketAddr>() {
            out = out.replace(&format!("{{{name}.ip}}"), &addr.ip().to_string());
            out = out.replace(&format!("{{{name}.port}}"), &addr.port().to_string());
        }
    }
    out
}

/// Why the catalog could not be loaded.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The CIS benchmark its items' `cis` ids are from.
    #[serde(default)]
    benchmark: String,
    checks: Vec<CheckDef>,
}

/// All check items, by id.
#[derive(Debug)]
pub struct Catalog {
    checks: BTreeMap<i64, CheckDef>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("checks/linux.toml", include_str!("../checks/linux.toml")),
    ("checks/aws.toml", include_str!("../checks/aws.toml")),
];

impl Catalog {
    /// The compiled-in check items.
    pub fn builtin() -> Result<Catalog, LoadError> {
        let mut c = Catalog { checks: BTreeMap::new() };
        for (name, text) in BUILTIN {
            c.add_file(name, text)?;
        }
        Ok(c)
    }

    /// The compiled-in items, plus those of `user_dir` when one is given (`--catalog-dir`).
    pub fn load(user_dir: Option<&Path>) -> Result<Catalog, LoadError> {
        match user_dir {
            Some(dir) => Catalog::with_user_dir(dir),
            None => Catalog::builtin(),
        }
    }

    /// The compiled-in items plus every `*.toml` in `dir` (sorted by name).
    pub fn with_user_dir(dir: &Path) -> Result<Catalog, LoadError> {
        let mut c = Catalog::builtin()?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| LoadError(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| LoadError(format!("{}: {e}", f.display())))?;
            c.add_file(&f.display().to_string(), &text)?;
        }
        Ok(c)
    }

    fn add_file(&mut self, name: &str, text: &str) -> Result<(), LoadError> {
        let file: File = toml::from_str(text).map_err(|e| LoadError(format!("{name}: {e}")))?;
        for mut check in file.checks {
            check.benchmark = file.benchmark.clone();
            if check.cis.is_some() && check.benchmark.is_empty() {
                return Err(LoadError(format!("{name}: check {} names a CIS id, and the file no benchmark", check.id)));
            }
            check.rule_template = std::mem::take(&mut check.rule);
            check.rule = check.rule_with(&[]);
            validate(&check).map_err(|e| LoadError(format!("{name}: check {}: {e}", check.id)))?;
            if self.checks.contains_key(&check.id) {
                return Err(LoadError(format!("{name}: check id {} is defined twice", check.id)));
            }
            if let Some(e) = self.checks.values().find_map(|c| crate::structure::conflict(&c.policy, &check.policy)) {
                return Err(LoadError(format!("{name}: check {}: {e}", check.id)));
            }
            self.checks.insert(check.id, check);
        }
        Ok(())
    }

    /// One check item.
    pub fn get(&self, id: i64) -> Option<&CheckDef> {
        self.checks.get(&id)
    }

    /// Every check item, by id.
    pub fn all(&self) -> impl Iterator<Item = &CheckDef> {
        self.checks.values()
    }

    /// The standards of every item, as a tree.
    pub fn structure(&self) -> Vec<crate::Standard<'_>> {
        crate::structure::structure(self.checks.values())
    }

    /// The items a connector kind evaluates.
    pub fn for_asset<'a>(&'a self, asset: &'a str) -> impl Iterator<Item = &'a CheckDef> {
        self.checks.values().filter(move |c| c.asset == asset)
    }
}

fn validate(c: &CheckDef) -> Result<(), String> {
    if c.rule.is_empty() {
        return Err("the rule has no condition".into());
    }
    for custom in &c.custom {
        if custom.kind.check(&custom.default).as_deref() != Some(custom.default.as_str()) {
            return Err(format!(
                "custom config {}: the default {:?} is not a value of its type",
                custom.name, custom.default
            ));
        }
        if c.custom.iter().filter(|o| o.name == custom.name).count() > 1 {
            return Err(format!("custom config {} is defined twice", custom.name));
        }
    }
    // Every `{Name}` left in the rule names no custom config (a `{` in any other form is a
    // value like any other).
    if let Some(cond) = c.rule.iter().find(|cond| cond.value.iter().chain(&cond.values).any(|v| names_a_config(v))) {
        return Err(format!("the condition on {} names a custom config the item does not define", cond.key));
    }
    for cond in &c.rule {
        let needs_value = matches!(cond.op, Op::Eq | Op::Le | Op::Ge | Op::LeDuration | Op::ModeAtMost | Op::FieldsLe);
        if needs_value && cond.value.is_none() {
            return Err(format!("condition on {} needs a value", cond.key));
        }
        if matches!(cond.op, Op::In | Op::NoneOf | Op::AllOf | Op::AuditRules) && cond.values.is_empty() {
            return Err(format!("condition on {} needs values", cond.key));
        }
    }
    if let Some(r) = &c.repair {
        if !(r.support_type == 1 || r.support_type == 2) {
            return Err(format!("repair support_type {} is not 1 or 2", r.support_type));
        }
        if r.steps.is_empty() {
            return Err("the repair has no step".into());
        }
        match (&r.effect, c.asset == "host") {
            (None, true) => return Err("a repairable host item must say how it takes effect (repair.effect)".into()),
            (Some(_), false) => {
                return Err("repair.effect is for host items: a cloud change takes effect through its API".into())
            }
            (Some(effect), true) => effect.check(&r.steps)?,
            (None, false) => {}
        }
        let mut names: Vec<&str> = r.params.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("two repair parameters share a name".into());
        }
        for p in &r.params {
            if let Some(d) = &p.default {
                if p.kind.check(d).is_none() {
                    return Err(format!("default {d:?} of {} does not match its type", p.name));
                }
            }
            p.kind.validate_definition().map_err(|e| format!("parameter {}: {e}", p.name))?;
        }
        // Every placeholder must be filled once parameters are resolved.
        let sample: Vec<(String, String)> = r
            .params
            .iter()
            .map(|p| (p.name.clone(), if p.kind == ParamType::IpPort { "127.0.0.1:1".into() } else { "x".into() }))
            .collect();
        for step in c.render_steps(&sample) {
            if let Some(value) = step.values().into_iter().find(|v| v.contains('{')) {
                return Err(format!("a step names an unknown parameter: {value}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_and_meets_the_minimums() {
        let c = Catalog::builtin().unwrap();
        let all: Vec<_> = c.all().collect();
        assert!(all.len() >= 14);
        assert!(all.iter().filter(|c| c.repair.is_some()).count() >= 10);
        assert!(all.iter().filter(|c| c.supports_rollback()).count() >= 8);
        // One repair takes an IP:PORT parameter supplied at submit time.
        assert!(all.iter().any(|c| c.repair.as_ref().is_some_and(|r| r
            .params
            .iter()
            .any(|p| p.kind == ParamType::IpPort && p.usage == model::UsageType::Temp && p.required))));
        for c in all {
            assert!(!c.name.zh.is_empty() && !c.name.en.is_empty(), "{}", c.id);
        }
    }

    /// The JSON a result stores is the map of shown values as serde writes it, for every item:
    /// values set (with and without their source), defaults, values in effect, names shared
    /// by two fields (the last counts), and values that need escaping.
    #[test]
    fn shown_json_is_the_shown_values_as_json() {
        let c = Catalog::builtin().unwrap();
        let odd = "a \"quoted\" \\ value\twith\u{1} control, \u{7f} and ü";
        for item in c.all() {
            let mut shared = item.clone();
            if let Some(first) = shared.config.first().cloned() {
                shared.config.push(ConfigField { key: "other.key".into(), ..first });
            }
            for (n, item) in [item, &shared].into_iter().enumerate() {
                let mut docs = vec![Document::new()];
                for (i, f) in item.config.iter().enumerate() {
                    let mut d = docs.last().unwrap().clone();
                    d.insert(f.key.clone(), if i % 2 == 0 { odd.to_string() } else { format!("v{i}") });
                    if i % 3 != 1 {
                        d.insert(format!("{SOURCE}{}", f.key), format!("/etc/x:{i}"));
                    }
                    d.insert(format!("{LIVE}{}", f.key), format!("live {i}"));
                    docs.push(d);
                }
                docs.push(
                    docs.last()
                        .unwrap()
                        .iter()
                        .filter(|(k, _)| !k.starts_with(LIVE))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                );
                for doc in &docs {
                    let live = crate::eval::has_live_values(doc);
                    let expected = serde_json::to_string(&item.shown_values(doc)).unwrap();
                    assert_eq!(item.shown_json(doc, live), expected, "item {} (variant {n}), {doc:?}", item.id);
                }
            }
        }
    }

    #[test]
    fn placeholders_are_substituted() {
        let c = Catalog::builtin().unwrap();
        let redis = c.get(1016).unwrap();
        let steps = redis.render_steps(&[("IPPort".into(), "10.1.2.3:6380".into())]);
        assert!(matches!(&steps[0], Step::SetDirective { key, value, .. } if key == "bind" && value == "10.1.2.3"));
        assert!(matches!(&steps[1], Step::SetDirective { key, value, .. } if key == "port" && value == "6380"));
        let ipv6 = redis.render_steps(&[("IPPort".into(), "[::1]:6379".into())]);
        assert!(matches!(&ipv6[0], Step::SetDirective { value, .. } if value == "::1"));
    }

    /// A place in a standard of its own (no built-in item is there).
    const OWN_PLACE: &str = r#"{ type = "COMPLIANCE", standard_id = 9, standard = { zh = "s", en = "s" }, requirement_id = 91, requirement = { zh = "r", en = "r" }, section_id = 911, section = { zh = "c", en = "c" } }"#;

    /// A user catalog file of one item placed by `policy` (an inline table), with `rule`
    /// and then `rest` (more fields, or a repair section).
    fn item_file(policy: &str, rule: &str, rest: &str) -> String {
        format!(
            r#"[[checks]]
id = 9001
key = "t"
name = {{ zh = "t", en = "t" }}
risk = "LOW"
description = {{ zh = "t", en = "t" }}
solution = {{ zh = "t", en = "t" }}
assist = {{ zh = "t", en = "t" }}
policy = {policy}
rule = [{rule}]
{rest}
"#
        )
    }

    /// The built-in catalog with `text` as its one user file.
    fn load_user_file(text: &str) -> Result<Catalog, LoadError> {
        let dir = tempfile_dir();
        std::fs::write(dir.join("t.toml"), text).unwrap();
        let loaded = Catalog::with_user_dir(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    /// A user file of one repairable host item with these steps and `effect` line.
    fn one_item(effect: &str, steps: &str) -> Result<Catalog, LoadError> {
        let repair = format!("[checks.repair]\nsupport_type = 1\nreset = true\nflow = [{{ zh = \"f\", en = \"f\" }}]\nsteps = [{steps}]\n{effect}");
        load_user_file(&item_file(OWN_PLACE, r#"{ key = "sshd.x", op = "present" }"#, &repair))
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("posture-catalog-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_repairable_host_item_says_how_it_takes_effect_and_it_must_fit() {
        for c in Catalog::builtin().unwrap().all() {
            if let Some(r) = &c.repair {
                assert_eq!(r.effect.is_some(), c.asset == "host", "{}", c.id);
            }
        }
        let sshd =
            r#"{ op = "set_directive", dialect = "sshd", file = "/etc/ssh/sshd_config", key = "X", value = "no" }"#;
        let mode = r#"{ op = "set_mode", file = "/etc/x", mode = "0600" }"#;
        one_item(r#"effect = { validate = "sshd", apply = "reload_sshd", live = "sshd_effective" }"#, sshd).unwrap();
        one_item(r#"effect = { apply = "immediate" }"#, mode).unwrap();
        for (effect, steps, says) in [
            ("", sshd, "takes effect"),
            (r#"effect = { apply = "reload_sshd" }"#, sshd, "without validate"),
            (r#"effect = { apply = "immediate" }"#, sshd, "does not fit"),
            (r#"effect = { apply = "sysctl_write", live = "proc_sys" }"#, sshd, "does not fit"),
            (r#"effect = { validate = "sshd", apply = "reload_sshd", live = "proc_sys" }"#, sshd, "do not fit"),
            (r#"effect = { apply = "run", command = "rm -rf /" }"#, sshd, "t.toml"),
        ] {
            let e = one_item(effect, steps).unwrap_err().0;
            assert!(e.contains(says), "{effect}: {e}");
        }
    }

    #[test]
    fn an_accounts_custom_threshold_changes_the_rule_and_the_repairs_default() {
        let catalog = Catalog::builtin().unwrap();
        let item = catalog.get(1009).unwrap();
        let doc: Document =
            [("login_defs.present".to_string(), "true".to_string()), ("login_defs.PASS_MAX_DAYS".into(), "90".into())]
                .into_iter()
                .collect();
        assert_eq!(crate::evaluate(item, &doc), crate::Outcome::Pass);
        assert!(matches!(item.customised(None), std::borrow::Cow::Borrowed(_)));
        let same: CustomValues = [("PassMaxDays".to_string(), "365".to_string())].into_iter().collect();
        assert!(matches!(item.customised(Some(&same)), std::borrow::Cow::Borrowed(_)), "the default is no change");
        let stricter: CustomValues = [("PassMaxDays".to_string(), "60".to_string())].into_iter().collect();
        let mine = item.customised(Some(&stricter));
        assert!(matches!(crate::evaluate(&mine, &doc), crate::Outcome::NotPass(_)));
        let param = &mine.repair.as_ref().unwrap().params[0];
        assert_eq!((param.name.as_str(), param.default.as_deref()), ("PassMaxDays", Some("60")));
        assert_eq!(item.rule[0].value.as_deref(), Some("365"), "the catalog's own item is unchanged");
        // A repair value looser than the account's threshold would fail its verification.
        assert_eq!(mine.looser_than_threshold("PassMaxDays", "60"), None);
        assert!(mine.looser_than_threshold("PassMaxDays", "90").is_some_and(|why| why.contains("le 60")));
        assert_eq!(item.looser_than_threshold("PassMaxDays", "90"), None);
        assert_eq!(mine.looser_than_threshold("Other", "90"), None);
    }

    #[test]
    fn a_rule_may_name_only_its_own_custom_configs_with_valid_defaults() {
        let file = |custom: &str, value: &str| {
            item_file(OWN_PLACE, &format!(r#"{{ key = "sshd.x", op = "le", value = "{value}" }}"#), custom)
        };
        let limit = r#"custom = [{ name = "Limit", show_name = { zh = "l", en = "l" }, type_define = { type = "NUMBER", range = [1, 9] }, default = "5" }]"#;
        let loaded = load_user_file(&file(limit, "{Limit}")).unwrap();
        assert_eq!(loaded.get(9001).unwrap().rule[0].value.as_deref(), Some("5"));
        let e = load_user_file(&file("", "{Limit}")).unwrap_err().0;
        assert!(e.contains("names a custom config"), "{e}");
        let e = load_user_file(&file(&limit.replace("\"5\"", "\"50\""), "{Limit}")).unwrap_err().0;
        assert!(e.contains("not a value of its type"), "{e}");
    }

    #[test]
    fn a_user_item_cannot_rename_or_move_a_standard_requirement_or_section() {
        let builtin = Catalog::builtin().unwrap();
        let p = &builtin.get(1001).unwrap().policy;
        let (s, r, c) = (p.standard_id, p.requirement_id, p.section_id);
        let place = |sid: i64, sname: &str, rid: i64, cid: i64| {
            let policy = format!(
                r#"{{ type = "COMPLIANCE", standard_id = {sid}, standard = {{ zh = "{sname}", en = "{sname}" }}, requirement_id = {rid}, requirement = {{ zh = "{r}", en = "{r}" }}, section_id = {cid}, section = {{ zh = "{c}", en = "{c}" }} }}"#,
                r = p.requirement.en,
                c = p.section.en,
            );
            item_file(&policy, r#"{ key = "sshd.x", op = "present" }"#, "")
        };
        // A standard of its own, with its own requirement and section, loads.
        let joined = load_user_file(&place(77, "New", 771, 7711)).unwrap();
        assert_eq!(joined.structure().iter().filter(|st| st.id == 77).count(), 1);
        for (text, says) in [
            (place(s, "Another name", r, c), format!("standard {s}")),
            (place(77, "New", r, 7711), format!("requirement {r}")),
            (place(77, "New", 771, c), format!("section {c}")),
        ] {
            let e = load_user_file(&text).unwrap_err().0;
            assert!(e.contains(&says) && e.contains("t.toml"), "{e}");
        }
    }

    #[test]
    fn a_bad_user_file_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("posture-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bad.toml"), "[[checks]]\nid = 1001\n").unwrap();
        let err = Catalog::with_user_dir(&dir).unwrap_err();
        assert!(err.0.contains("bad.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod docs_tests {
    #[test]
    fn docs_checks_md_lists_every_item() {
        let doc = include_str!("../../../docs/checks.md");
        for c in super::Catalog::builtin().unwrap().all() {
            let cis = c.cis.as_deref().unwrap_or("—");
            assert!(
                doc.contains(&format!("| {} | {} | {} | {} |", c.id, c.name.en, c.risk.upper(), cis)),
                "docs/checks.md does not list check {} with its risk and CIS id (scripts/checks_table.py)",
                c.id
            );
            if let Some(effect) = c.repair.as_ref().and_then(|r| r.effect) {
                let apply = serde_json::to_value(effect.apply).unwrap();
                assert!(
                    doc.contains(&format!("| {} | `{}` |", c.id, apply.as_str().unwrap())),
                    "docs/checks.md does not say how check {} takes effect",
                    c.id
                );
            }
        }
    }
}
