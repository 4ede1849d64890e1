//! The standards the check items belong to, as a tree: standard → requirement → section →
//! items (the `policy` of each item places it). GetCheckStructure, ListCheckStandard,
//! ListCheckPolicies and GetCheckSummary all read this one tree.

use std::collections::BTreeMap;

use model::Text;

use crate::{CheckDef, Policy};

/// A standard (for example CIS Ubuntu Linux), with its requirements in id order.
#[derive(Debug)]
pub struct Standard<'a> {
    /// `COMPLIANCE`, `RISK`, …
    pub standard_type: &'a str,
    #[allow(missing_docs)]
    pub id: i64,
    #[allow(missing_docs)]
    pub name: &'a Text,
    #[allow(missing_docs)]
    pub requirements: Vec<Requirement<'a>>,
}

/// A requirement of a standard, with its sections in id order.
#[derive(Debug)]
pub struct Requirement<'a> {
    #[allow(missing_docs)]
    pub id: i64,
    #[allow(missing_docs)]
    pub name: &'a Text,
    #[allow(missing_docs)]
    pub sections: Vec<Section<'a>>,
}

/// A section of a requirement, with its items in id order.
#[derive(Debug)]
pub struct Section<'a> {
    #[allow(missing_docs)]
    pub id: i64,
    #[allow(missing_docs)]
    pub name: &'a Text,
    #[allow(missing_docs)]
    pub checks: Vec<&'a CheckDef>,
}

impl<'a> Standard<'a> {
    /// Every item of the standard.
    pub fn checks(&self) -> impl Iterator<Item = &'a CheckDef> + '_ {
        self.requirements.iter().flat_map(Requirement::checks)
    }
}

impl<'a> Requirement<'a> {
    /// Every item of the requirement.
    pub fn checks(&self) -> impl Iterator<Item = &'a CheckDef> + '_ {
        self.sections.iter().flat_map(|s| s.checks.iter().copied())
    }
}

/// The tree of `checks`, each level in id order. Only standards, requirements and sections
/// that hold at least one of `checks` appear.
pub fn structure<'a>(checks: impl IntoIterator<Item = &'a CheckDef>) -> Vec<Standard<'a>> {
    type Sections<'a> = BTreeMap<i64, (&'a Text, Vec<&'a CheckDef>)>;
    type Requirements<'a> = BTreeMap<i64, (&'a Text, Sections<'a>)>;
    let mut tree: BTreeMap<i64, (&'a Policy, Requirements<'a>)> = BTreeMap::new();
    for c in checks {
        let p = &c.policy;
        let (_, requirements) = tree.entry(p.standard_id).or_insert_with(|| (p, BTreeMap::new()));
        let (_, sections) = requirements.entry(p.requirement_id).or_insert_with(|| (&p.requirement, BTreeMap::new()));
        sections.entry(p.section_id).or_insert_with(|| (&p.section, Vec::new())).1.push(c);
    }
    tree.into_iter()
        .map(|(id, (p, requirements))| Standard {
            standard_type: &p.standard_type,
            id,
            name: &p.standard,
            requirements: requirements
                .into_iter()
                .map(|(id, (name, sections))| Requirement {
                    id,
                    name,
                    sections: sections.into_iter().map(|(id, (name, checks))| Section { id, name, checks }).collect(),
                })
                .collect(),
        })
        .collect()
}

/// Why two items' places cannot both hold: the same standard, requirement or section id with
/// another name or type, or a requirement or section under two parents (the tree would
/// depend on which item came first).
pub(crate) fn conflict(a: &Policy, b: &Policy) -> Option<String> {
    if a.standard_id == b.standard_id && (a.standard != b.standard || a.standard_type != b.standard_type) {
        return Some(format!("standard {} has two names or types", a.standard_id));
    }
    if a.requirement_id == b.requirement_id && (a.requirement != b.requirement || a.standard_id != b.standard_id) {
        return Some(format!("requirement {} has two names or standards", a.requirement_id));
    }
    if a.section_id == b.section_id && (a.section != b.section || a.requirement_id != b.requirement_id) {
        return Some(format!("section {} has two names or requirements", a.section_id));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::Catalog;

    #[test]
    fn every_item_sits_once_in_a_tree_ordered_by_id() {
        let catalog = Catalog::builtin().unwrap();
        let tree = catalog.structure();
        let mut placed: Vec<i64> = tree.iter().flat_map(|s| s.checks()).map(|c| c.id).collect();
        placed.sort();
        let all: Vec<i64> = catalog.all().map(|c| c.id).collect();
        assert_eq!(placed, all);
        assert!(tree.windows(2).all(|w| w[0].id < w[1].id));
        for s in &tree {
            assert!(s.requirements.windows(2).all(|w| w[0].id < w[1].id));
            for r in &s.requirements {
                assert!(r.sections.windows(2).all(|w| w[0].id < w[1].id));
                for c in r.checks() {
                    assert_eq!((c.policy.standard_id, c.policy.requirement_id), (s.id, r.id));
                }
            }
        }
        // The built-in standards: CIS Linux, best practices, CIS AWS.
        assert_eq!(
            tree.iter().map(|s| (s.id, s.standard_type)).collect::<Vec<_>>(),
            [(1, "COMPLIANCE"), (2, "RISK"), (3, "COMPLIANCE")]
        );
    }

    #[test]
    fn op_names_are_the_ones_catalog_files_use() {
        for c in Catalog::builtin().unwrap().all() {
            for cond in &c.rule {
                let parsed: crate::Op = serde_json::from_value(serde_json::json!(cond.op.name())).unwrap();
                assert_eq!(parsed, cond.op);
            }
            assert!(c.rule_text().starts_with(&c.rule[0].key), "{}", c.rule_text());
        }
    }
}
