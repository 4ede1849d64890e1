//! Security groups (`aws.sg`): inbound and outbound rules (two aspects), each rule flattened to
//! one source so that two rule sets can be compared and a restore can revoke exactly what was
//! added and re-authorize exactly what was removed.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};
use model::Document;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clients::{done_if, AwsError, Clients};

/// The group's inbound rules.
pub(crate) const INGRESS: &str = "ingress";
/// The group's outbound rules.
pub(crate) const EGRESS: &str = "egress";

/// One inbound rule with one source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Rule {
    pub proto: String,
    pub from: Option<i32>,
    pub to: Option<i32>,
    /// `cidr4:…`, `cidr6:…`, `group:<user>/<group-id>`, `prefix:<pl-id>`.
    pub source: String,
    pub description: Option<String>,
}

impl Rule {
    fn open_to_world(&self) -> bool {
        self.source == "cidr4:0.0.0.0/0" || self.source == "cidr6:::/0"
    }

    fn all_protocols(&self) -> bool {
        self.proto == "-1"
    }

    fn covers_tcp(&self, port: i32) -> bool {
        self.all_protocols()
            || ((self.proto == "tcp" || self.proto == "6")
                && self.from.unwrap_or(0) <= port
                && port <= self.to.unwrap_or(65535))
    }

    fn all_ports(&self) -> bool {
        self.all_protocols()
            || ((self.proto == "tcp" || self.proto == "udp" || self.proto == "6" || self.proto == "17")
                && self.from.unwrap_or(0) <= 0
                && self.to.unwrap_or(65535) >= 65535)
    }

    /// The same rule for `revoke`/`authorize` (one permission, one source).
    fn permission(&self, with_description: bool) -> IpPermission {
        let desc = if with_description { self.description.clone() } else { None };
        let mut p = IpPermission::builder().ip_protocol(&self.proto).set_from_port(self.from).set_to_port(self.to);
        if let Some(cidr) = self.source.strip_prefix("cidr4:") {
            p = p.ip_ranges(IpRange::builder().cidr_ip(cidr).set_description(desc).build());
        } else if let Some(cidr) = self.source.strip_prefix("cidr6:") {
            p = p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(cidr).set_description(desc).build());
        } else if let Some(pl) = self.source.strip_prefix("prefix:") {
            p = p.prefix_list_ids(PrefixListId::builder().prefix_list_id(pl).set_description(desc).build());
        } else if let Some(pair) = self.source.strip_prefix("group:") {
            let (user, group) = pair.split_once('/').unwrap_or(("", pair));
            let mut g = UserIdGroupPair::builder().group_id(group).set_description(desc);
            if !user.is_empty() {
                g = g.user_id(user);
            }
            p = p.user_id_group_pairs(g.build());
        }
        p.build()
    }

    /// Whether AWS takes the two for the same rule (it ignores the description).
    fn same_permission(&self, other: &Rule) -> bool {
        (&self.proto, self.from, self.to, &self.source) == (&other.proto, other.from, other.to, &other.source)
    }

    fn with_source(&self, cidr: &str) -> Rule {
        let source = if cidr.contains(':') { format!("cidr6:{cidr}") } else { format!("cidr4:{cidr}") };
        Rule { source, ..self.clone() }
    }

    fn show(&self) -> String {
        let ports = match (self.from, self.to) {
            _ if self.all_protocols() => "all".to_string(),
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "all".to_string(),
        };
        let source = self.source.split_once(':').map_or(self.source.as_str(), |(_, s)| s);
        format!("{}/{} from {}", self.proto, ports, source)
    }
}

/// The rules of a permission list, one per source, sorted.
pub(crate) fn flatten(perms: &[IpPermission]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for p in perms {
        let base = Rule {
            proto: p.ip_protocol().unwrap_or("-1").to_string(),
            from: p.from_port(),
            to: p.to_port(),
            source: String::new(),
            description: None,
        };
        // The all-protocols rule carries no ports; AWS may answer -1 for them.
        let base = if base.proto == "-1" { Rule { from: None, to: None, ..base } } else { base };
        let rule = |source: String, description: Option<&str>| Rule {
            source,
            description: description.map(str::to_string),
            ..base.clone()
        };
        rules.extend(
            p.ip_ranges().iter().map(|r| rule(format!("cidr4:{}", r.cidr_ip().unwrap_or("")), r.description())),
        );
        rules.extend(
            p.ipv6_ranges().iter().map(|r| rule(format!("cidr6:{}", r.cidr_ipv6().unwrap_or("")), r.description())),
        );
        rules.extend(
            p.prefix_list_ids()
                .iter()
                .map(|r| rule(format!("prefix:{}", r.prefix_list_id().unwrap_or("")), r.description())),
        );
        rules.extend(p.user_id_group_pairs().iter().map(|g| {
            rule(format!("group:{}/{}", g.user_id().unwrap_or(""), g.group_id().unwrap_or("")), g.description())
        }));
    }
    rules.sort();
    rules.dedup();
    rules
}

/// The group as the API describes it.
struct Group {
    name: String,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
}

impl Group {
    fn rules(&self, aspect: &str) -> Result<&[Rule], AwsError> {
        match aspect {
            INGRESS => Ok(&self.ingress),
            EGRESS => Ok(&self.egress),
            other => Err(AwsError::other(format!("{other} is not an aspect of a security group"))),
        }
    }
}

async fn describe(c: &Clients, group_id: &str) -> Result<Group, AwsError> {
    let out = c.ec2.describe_security_groups().group_ids(group_id).send().await?;
    let Some(g) = out.security_groups().first() else {
        return Err(AwsError::gone("InvalidGroup.NotFound", format!("{group_id} does not exist")));
    };
    Ok(Group {
        name: g.group_name().unwrap_or("").to_string(),
        ingress: flatten(g.ip_permissions()),
        egress: flatten(g.ip_permissions_egress()),
    })
}

pub(crate) async fn read(c: &Clients, group_id: &str, aspect: &str) -> Result<Value, AwsError> {
    let g = describe(c, group_id).await?;
    Ok(serde_json::to_value(g.rules(aspect)?).unwrap_or_default())
}

pub(crate) async fn document(c: &Clients, group_id: &str) -> Result<Document, AwsError> {
    let g = describe(c, group_id).await?;
    let mut d = document_of(&g.name, &g.ingress);
    d.insert("sg.egress_rules".into(), g.egress.len().to_string());
    d.insert("sg.egress_list".into(), g.egress.iter().map(|r| r.show()).collect::<Vec<_>>().join(", "));
    Ok(d)
}

pub(crate) fn document_of(name: &str, rules: &[Rule]) -> Document {
    let world: Vec<&Rule> = rules.iter().filter(|r| r.open_to_world()).collect();
    let flag = |open: bool| if open { "open" } else { "closed" }.to_string();
    let mut d = Document::new();
    d.insert("sg.name".into(), name.to_string());
    d.insert("sg.ingress_rules".into(), rules.len().to_string());
    d.insert("sg.world_tcp_22".into(), flag(world.iter().any(|r| r.covers_tcp(22))));
    d.insert("sg.world_tcp_3389".into(), flag(world.iter().any(|r| r.covers_tcp(3389))));
    d.insert("sg.world_all_ports".into(), flag(world.iter().any(|r| r.all_ports())));
    d.insert("sg.world_rules".into(), world.iter().map(|r| r.show()).collect::<Vec<_>>().join(", "));
    if name == "default" {
        d.insert("sg.default".into(), "yes".into());
    }
    d
}

/// Which world-open rules `sg.replace_world_ingress` replaces.
enum Ports {
    /// Rules for every port (all protocols, or 0-65535).
    All,
    /// Rules that let TCP reach this port.
    Tcp(i32),
}

impl Ports {
    fn parse(ports: &str) -> Result<Ports, AwsError> {
        match ports {
            "all" => Ok(Ports::All),
            p => p.parse().map(Ports::Tcp).map_err(|_| AwsError::other(format!("{p} is not a port"))),
        }
    }

    fn offends(&self, r: &Rule) -> bool {
        r.open_to_world()
            && match self {
                Ports::All => r.all_ports(),
                Ports::Tcp(port) => r.covers_tcp(*port),
            }
    }
}

pub(crate) async fn apply(
    c: &Clients,
    group_id: &str,
    action: &str,
    args: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let g = describe(c, group_id).await?;
    let aspect = aspect_of(action)?;
    let current = g.rules(aspect)?;
    let want = wanted(current, action, args)?;
    converge(c, group_id, aspect, current, &want).await
}

/// The aspect an action changes.
fn aspect_of(action: &str) -> Result<&'static str, AwsError> {
    match action {
        "sg.replace_world_ingress" | "sg.revoke_all_ingress" => Ok(INGRESS),
        "sg.revoke_all_egress" => Ok(EGRESS),
        other => Err(AwsError::other(format!("{other} is not a security group action"))),
    }
}

/// The rules an action asks the aspect to have, given the rules it has: what [`apply`]
/// converges to.
fn wanted(current: &[Rule], action: &str, args: &BTreeMap<String, String>) -> Result<Vec<Rule>, AwsError> {
    match action {
        "sg.replace_world_ingress" => {
            let ports = args.get("ports").map(String::as_str).unwrap_or("");
            let cidr = args.get("cidr").ok_or_else(|| AwsError::other("sg.replace_world_ingress needs a cidr"))?;
            let ports = Ports::parse(ports)?;
            let mut want: Vec<Rule> =
                current.iter().map(|r| if ports.offends(r) { r.with_source(cidr) } else { r.clone() }).collect();
            want.sort();
            want.dedup();
            Ok(want)
        }
        "sg.revoke_all_ingress" | "sg.revoke_all_egress" => Ok(Vec::new()),
        other => Err(AwsError::other(format!("{other} is not a security group action"))),
    }
}

/// The rules the aspect will read as after [`apply`] carried `action` out on rules that read as
/// `before` (the JSON of [`read`]); calls nothing.
pub(crate) fn planned(action: &str, args: &BTreeMap<String, String>, before: &Value) -> Result<Value, AwsError> {
    aspect_of(action)?;
    let current: Vec<Rule> =
        serde_json::from_value(before.clone()).map_err(|e| AwsError::other(format!("the rules read: {e}")))?;
    let want = wanted(&current, action, args)?;
    Ok(serde_json::to_value(converged(&current, &want)).unwrap_or_default())
}

/// What the rules read as after [`converge`] from `current` to `want`. AWS tells rules apart by
/// protocol, ports and source, not by description: revoking takes the rule whatever its
/// description, and authorizing a rule whose protocol, ports and source are already there (with
/// another description) is a duplicate that changes nothing, so the rule keeps the description
/// it has (between two wanted rules that differ only in description, the first authorized, in
/// sorted order, is the one that stays).
fn converged(current: &[Rule], want: &[Rule]) -> Vec<Rule> {
    let mut after: Vec<Rule> = current.iter().filter(|r| want.contains(r)).cloned().collect();
    for r in want.iter().filter(|r| !current.contains(r)) {
        if !after.iter().any(|a| a.same_permission(r)) {
            after.push(r.clone());
        }
    }
    after.sort();
    after
}

pub(crate) async fn write(c: &Clients, group_id: &str, aspect: &str, want: &Value) -> Result<(), AwsError> {
    let want: Vec<Rule> =
        serde_json::from_value(want.clone()).map_err(|e| AwsError::other(format!("snapshot of {group_id}: {e}")))?;
    let g = describe(c, group_id).await?;
    converge(c, group_id, aspect, g.rules(aspect)?, &want).await
}

/// Revokes the rules not wanted, then authorizes the wanted ones that are missing, one rule per
/// call so that a call repeated after a crash (already revoked, already there) is harmless.
async fn converge(c: &Clients, group_id: &str, aspect: &str, current: &[Rule], want: &[Rule]) -> Result<(), AwsError> {
    // The four calls differ only in their name: (operation, rule, with its description).
    macro_rules! call {
        ($op:ident, $rule:expr, $described:expr) => {
            c.ec2
                .$op()
                .group_id(group_id)
                .ip_permissions($rule.permission($described))
                .send()
                .await
                .map(drop)
                .map_err(AwsError::from)
        };
    }
    let ingress = aspect == INGRESS;
    for r in current.iter().filter(|r| !want.contains(r)) {
        let res = if ingress {
            call!(revoke_security_group_ingress, r, false)
        } else {
            call!(revoke_security_group_egress, r, false)
        };
        done_if(res, "InvalidPermission.NotFound")?;
    }
    for r in want.iter().filter(|r| !current.contains(r)) {
        let res = if ingress {
            call!(authorize_security_group_ingress, r, true)
        } else {
            call!(authorize_security_group_egress, r, true)
        };
        done_if(res, "InvalidPermission.Duplicate")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(proto: &str, from: Option<i32>, to: Option<i32>, source: &str) -> Rule {
        Rule { proto: proto.into(), from, to, source: source.into(), description: None }
    }

    #[test]
    fn world_rules_are_found_by_port_and_by_range() {
        let rules = vec![
            rule("tcp", Some(20), Some(25), "cidr4:0.0.0.0/0"),
            rule("tcp", Some(3389), Some(3389), "cidr4:10.0.0.0/8"),
            rule("udp", Some(0), Some(65535), "cidr6:::/0"),
        ];
        let d = document_of("web", &rules);
        assert_eq!(d["sg.world_tcp_22"], "open", "a range that includes 22 opens it");
        assert_eq!(d["sg.world_tcp_3389"], "closed", "3389 is open to 10.0.0.0/8 only");
        assert_eq!(d["sg.world_all_ports"], "open", "udp 0-65535 from ::/0");
        assert!(!d.contains_key("sg.default"));
        let all = document_of("default", &[rule("-1", None, None, "cidr4:0.0.0.0/0")]);
        assert_eq!((all["sg.world_tcp_22"].as_str(), all["sg.world_tcp_3389"].as_str()), ("open", "open"));
        assert_eq!(all["sg.default"], "yes");
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn replacing_world_ingress_plans_the_rules_as_aws_will_read_them() {
        let before = serde_json::json!([
            {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:0.0.0.0/0", "description": "ssh"},
            {"proto": "tcp", "from": 22, "to": 22, "source": "cidr6:::/0", "description": null},
            {"proto": "tcp", "from": 443, "to": 443, "source": "cidr4:0.0.0.0/0", "description": null},
            {"proto": "tcp", "from": 3389, "to": 3389, "source": "group:123456789012/sg-0abc", "description": null},
        ]);
        let a = args(&[("ports", "22"), ("cidr", "10.0.0.0/8")]);
        // Both world rules for 22 become one rule from 10.0.0.0/8: AWS keeps the first one
        // authorized (sorted, the one without description) and refuses the other as a duplicate.
        let after = planned("sg.replace_world_ingress", &a, &before).unwrap();
        assert_eq!(
            after,
            serde_json::json!([
                {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:10.0.0.0/8", "description": null},
                {"proto": "tcp", "from": 443, "to": 443, "source": "cidr4:0.0.0.0/0", "description": null},
                {"proto": "tcp", "from": 3389, "to": 3389, "source": "group:123456789012/sg-0abc", "description": null},
            ])
        );
        // A rule that is already there keeps its description.
        let before = serde_json::json!([
            {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:0.0.0.0/0", "description": "ssh"},
            {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:10.0.0.0/8", "description": "office"},
        ]);
        assert_eq!(
            planned("sg.replace_world_ingress", &a, &before).unwrap(),
            serde_json::json!([{"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:10.0.0.0/8", "description": "office"}])
        );
        // All ports: every protocol from anywhere, to an IPv6 network, description kept.
        let before = serde_json::json!([
            {"proto": "-1", "from": null, "to": null, "source": "cidr4:0.0.0.0/0", "description": "any"},
            {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:0.0.0.0/0", "description": null},
        ]);
        let a = args(&[("ports", "all"), ("cidr", "2001:db8::/32")]);
        assert_eq!(
            planned("sg.replace_world_ingress", &a, &before).unwrap(),
            serde_json::json!([
                {"proto": "-1", "from": null, "to": null, "source": "cidr6:2001:db8::/32", "description": "any"},
                {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:0.0.0.0/0", "description": null},
            ])
        );
        // Nothing open to the world: nothing changes.
        let closed = serde_json::json!([{"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:10.0.0.0/8", "description": null}]);
        assert_eq!(
            planned("sg.replace_world_ingress", &args(&[("ports", "22"), ("cidr", "10.1.0.0/16")]), &closed).unwrap(),
            closed
        );
        assert!(planned("sg.replace_world_ingress", &args(&[("ports", "22")]), &closed).is_err(), "no cidr");
        assert!(
            planned("sg.replace_world_ingress", &args(&[("ports", "ssh"), ("cidr", "10.0.0.0/8")]), &closed).is_err()
        );
    }

    #[test]
    fn revoking_every_rule_plans_none() {
        let before = serde_json::json!([
            {"proto": "-1", "from": null, "to": null, "source": "cidr4:0.0.0.0/0", "description": null},
            {"proto": "-1", "from": null, "to": null, "source": "group:123456789012/sg-0abc", "description": null},
        ]);
        for action in ["sg.revoke_all_ingress", "sg.revoke_all_egress"] {
            assert_eq!(planned(action, &BTreeMap::new(), &before).unwrap(), serde_json::json!([]));
        }
        assert!(planned("sg.open_everything", &BTreeMap::new(), &before).is_err());
    }

    #[test]
    fn flattening_keeps_every_source_and_the_all_protocol_rule_has_no_ports() {
        let p = IpPermission::builder()
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").description("any").build())
            .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").user_id("123").build())
            .build();
        let rules = flatten(&[p]);
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| r.from.is_none() && r.to.is_none()));
        assert_eq!(rules[0].source, "cidr4:0.0.0.0/0");
        assert_eq!(rules[0].description.as_deref(), Some("any"));
        assert_eq!(rules[1].source, "group:123/sg-1");
        // The same permission rebuilt from a rule keeps its source and description.
        let back = flatten(&[rules[0].permission(true)]);
        assert_eq!(back, vec![rules[0].clone()]);
    }
}
