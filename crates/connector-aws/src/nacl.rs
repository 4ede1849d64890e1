//! Network ACLs (`aws.nacl`): inbound entries. CIS AWS 5.1 asks that no ACL lets the world reach
//! remote administration ports. A repair inserts a DENY entry for the port from the world just
//! before the entry that allowed it (entries are evaluated in rule number order, the first match
//! deciding); the rollback puts the inbound entries back exactly as they were.

use aws_sdk_ec2::types::{IcmpTypeCode, NetworkAcl, NetworkAclEntry, PortRange, RuleAction};
use model::Document;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clients::{done_unless, AwsError, Clients};

pub(crate) const INGRESS: &str = "ingress";

/// The rule every ACL ends with (deny everything); it cannot be changed or removed.
const LAST_RULE: i32 = 32767;

const WORLD4: &str = "0.0.0.0/0";
const WORLD6: &str = "::/0";

/// One inbound entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub rule: i32,
    pub protocol: String,
    pub allow: bool,
    pub cidr: String,
    pub from: Option<i32>,
    pub to: Option<i32>,
    pub icmp: Option<(i32, i32)>,
}

impl Entry {
    fn of(e: &NetworkAclEntry) -> Option<Entry> {
        if e.egress() != Some(false) || e.rule_number() == Some(LAST_RULE) {
            return None;
        }
        Some(Entry {
            rule: e.rule_number()?,
            protocol: e.protocol().unwrap_or("-1").to_string(),
            allow: e.rule_action() == Some(&RuleAction::Allow),
            cidr: e.cidr_block().or(e.ipv6_cidr_block()).unwrap_or("").to_string(),
            from: e.port_range().and_then(|p| p.from()),
            to: e.port_range().and_then(|p| p.to()),
            icmp: e.icmp_type_code().map(|i| (i.r#type().unwrap_or(-1), i.code().unwrap_or(-1))),
        })
    }

    fn covers_tcp(&self, port: i32) -> bool {
        self.protocol == "-1"
            || (self.protocol == "6" && self.from.unwrap_or(0) <= port && port <= self.to.unwrap_or(65535))
    }

    fn show(&self) -> String {
        let ports = match (self.from, self.to) {
            _ if self.protocol == "-1" => "all".to_string(),
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "all".to_string(),
        };
        let action = if self.allow { "allow" } else { "deny" };
        format!("#{} {action} {}/{ports} from {}", self.rule, self.protocol, self.cidr)
    }
}

/// The entry that decides whether the world (`world`) reaches TCP `port`: the first, by rule
/// number, whose source is the whole address family and which covers the port.
fn deciding(entries: &[Entry], world: &str, port: i32) -> Option<Entry> {
    entries.iter().filter(|e| e.cidr == world && e.covers_tcp(port)).min_by_key(|e| e.rule).cloned()
}

fn open_to_world(entries: &[Entry], port: i32) -> Vec<Entry> {
    [WORLD4, WORLD6].iter().filter_map(|w| deciding(entries, w, port)).filter(|e| e.allow).collect()
}

async fn describe(c: &Clients, id: &str) -> Result<NetworkAcl, AwsError> {
    let out = c.ec2.describe_network_acls().network_acl_ids(id).send().await?;
    out.network_acls()
        .iter()
        .find(|a| a.network_acl_id() == Some(id))
        .cloned()
        .ok_or_else(|| AwsError::gone("InvalidNetworkAclID.NotFound", format!("{id} does not exist")))
}

async fn entries(c: &Clients, id: &str) -> Result<Vec<Entry>, AwsError> {
    let mut e: Vec<Entry> = describe(c, id).await?.entries().iter().filter_map(Entry::of).collect();
    e.sort();
    Ok(e)
}

pub(crate) async fn read(c: &Clients, id: &str) -> Result<Value, AwsError> {
    Ok(serde_json::to_value(entries(c, id).await?).unwrap_or_default())
}

pub(crate) async fn document(c: &Clients, id: &str) -> Result<Document, AwsError> {
    let acl = describe(c, id).await?;
    let mut e: Vec<Entry> = acl.entries().iter().filter_map(Entry::of).collect();
    e.sort();
    Ok(document_of(acl.is_default() == Some(true), &e))
}

fn document_of(default: bool, entries: &[Entry]) -> Document {
    let mut d = Document::new();
    for port in [22, 3389] {
        let open = open_to_world(entries, port);
        let state = if open.is_empty() { "closed" } else { "open" };
        d.insert(format!("nacl.world_tcp_{port}"), state.into());
        d.insert(format!("nacl.world_tcp_{port}_by"), open.iter().map(Entry::show).collect::<Vec<_>>().join(", "));
    }
    if default {
        d.insert("nacl.default".into(), "yes".into());
    }
    d
}

pub(crate) async fn apply(
    c: &Clients,
    id: &str,
    action: &str,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let current = entries(c, id).await?;
    let want = wanted(&current, action, args)?;
    converge(c, id, &current, &want).await
}

/// The inbound entries an action asks for, given the entries there are: for each address family
/// whose world reaches the port, a DENY entry just below the entry that lets it in.
fn wanted(
    current: &[Entry],
    action: &str,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<Entry>, AwsError> {
    if action != "nacl.deny_world_ingress" {
        return Err(AwsError::other(format!("{action} is not a network ACL action")));
    }
    let port: i32 = args.get("port").and_then(|p| p.parse().ok()).ok_or_else(|| AwsError::other("no port"))?;
    let mut want = current.to_vec();
    for allow in open_to_world(current, port) {
        let taken = |n: i32| want.iter().any(|e| e.rule == n);
        let Some(rule) = (1..allow.rule).rev().find(|n| !taken(*n)) else {
            return Err(AwsError::other(format!(
                "no free rule number below {} for a DENY entry; renumber the ACL's entries first",
                allow.rule
            )));
        };
        want.push(Entry {
            rule,
            protocol: "6".into(),
            allow: false,
            cidr: allow.cidr.clone(),
            from: Some(port),
            to: Some(port),
            icmp: None,
        });
    }
    Ok(want)
}

/// What the inbound entries will read as after [`apply`] carried `action` out on entries that
/// read as `before`; calls nothing. [`converge`] makes every rule number hold what `want` has
/// (a TCP entry has no ICMP type and code), so they read as `want`, sorted as [`read`] sorts.
pub(crate) fn planned(
    action: &str,
    args: &std::collections::BTreeMap<String, String>,
    before: &Value,
) -> Result<Value, AwsError> {
    let current: Vec<Entry> =
        serde_json::from_value(before.clone()).map_err(|e| AwsError::other(format!("the entries read: {e}")))?;
    let mut want = wanted(&current, action, args)?;
    want.sort();
    Ok(serde_json::to_value(want).unwrap_or_default())
}

pub(crate) async fn write(c: &Clients, id: &str, want: &Value) -> Result<(), AwsError> {
    let want: Vec<Entry> =
        serde_json::from_value(want.clone()).map_err(|e| AwsError::other(format!("snapshot of {id}: {e}")))?;
    converge(c, id, &entries(c, id).await?, &want).await
}

/// Deletes the entries not wanted, replaces the changed ones and creates the missing ones, by
/// rule number, each call harmless to repeat after a crash.
async fn converge(c: &Clients, id: &str, current: &[Entry], want: &[Entry]) -> Result<(), AwsError> {
    for e in current.iter().filter(|e| !want.iter().any(|w| w.rule == e.rule)) {
        let res = c.ec2.delete_network_acl_entry().network_acl_id(id).rule_number(e.rule).egress(false).send().await;
        done_unless(res.map(drop), "InvalidNetworkAclEntry.NotFound")?;
    }
    for w in want {
        match current.iter().find(|e| e.rule == w.rule) {
            Some(e) if e == w => {}
            Some(_) => {
                let r = c.ec2.replace_network_acl_entry().network_acl_id(id).rule_number(w.rule).egress(false);
                let r =
                    r.protocol(&w.protocol).rule_action(action(w)).set_port_range(ports(w)).set_icmp_type_code(icmp(w));
                let r = if w.cidr.contains(':') { r.ipv6_cidr_block(&w.cidr) } else { r.cidr_block(&w.cidr) };
                r.send().await?;
            }
            None => {
                let r = c.ec2.create_network_acl_entry().network_acl_id(id).rule_number(w.rule).egress(false);
                let r =
                    r.protocol(&w.protocol).rule_action(action(w)).set_port_range(ports(w)).set_icmp_type_code(icmp(w));
                let r = if w.cidr.contains(':') { r.ipv6_cidr_block(&w.cidr) } else { r.cidr_block(&w.cidr) };
                done_unless(r.send().await.map(drop), "NetworkAclEntryAlreadyExists")?;
            }
        }
    }
    Ok(())
}

fn action(e: &Entry) -> RuleAction {
    if e.allow {
        RuleAction::Allow
    } else {
        RuleAction::Deny
    }
}

fn ports(e: &Entry) -> Option<PortRange> {
    (e.from.is_some() || e.to.is_some()).then(|| PortRange::builder().set_from(e.from).set_to(e.to).build())
}

fn icmp(e: &Entry) -> Option<IcmpTypeCode> {
    e.icmp.map(|(t, code)| IcmpTypeCode::builder().r#type(t).code(code).build())
}

pub(crate) async fn list(c: &Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c.ec2.describe_network_acls().set_next_token(token.take()).send().await?;
        for a in page.network_acls() {
            let Some(id) = a.network_acl_id() else { continue };
            let default = if a.is_default() == Some(true) { ", default" } else { "" };
            out.push((id.to_string(), format!("{id} ({}{default})", a.vpc_id().unwrap_or("no VPC"))));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rule: i32, protocol: &str, allow: bool, cidr: &str, ports: Option<(i32, i32)>) -> Entry {
        Entry {
            rule,
            protocol: protocol.into(),
            allow,
            cidr: cidr.into(),
            from: ports.map(|p| p.0),
            to: ports.map(|p| p.1),
            icmp: None,
        }
    }

    #[test]
    fn a_deny_entry_is_planned_below_each_world_allow() {
        let port = |p: &str| std::collections::BTreeMap::from([("port".to_string(), p.to_string())]);
        // AWS's default ACL, with an IPv6 allow-all too.
        let before =
            serde_json::to_value([entry(100, "-1", true, WORLD4, None), entry(101, "-1", true, WORLD6, None)]).unwrap();
        let after = planned("nacl.deny_world_ingress", &port("22"), &before).unwrap();
        // Rule 100 lets the IPv4 world in: DENY at 99; rule 101 the IPv6 world: DENY at the first
        // free number below it, 98. Sorted by rule number, as read sorts them.
        assert_eq!(
            after,
            serde_json::json!([
                {"rule": 98, "protocol": "6", "allow": false, "cidr": "::/0", "from": 22, "to": 22, "icmp": null},
                {"rule": 99, "protocol": "6", "allow": false, "cidr": "0.0.0.0/0", "from": 22, "to": 22, "icmp": null},
                {"rule": 100, "protocol": "-1", "allow": true, "cidr": "0.0.0.0/0", "from": null, "to": null, "icmp": null},
                {"rule": 101, "protocol": "-1", "allow": true, "cidr": "::/0", "from": null, "to": null, "icmp": null},
            ])
        );
        // Planned again: the world no longer reaches 22, nothing changes.
        assert_eq!(planned("nacl.deny_world_ingress", &port("22"), &after).unwrap(), after);
        // No rule number free below the allow.
        let full = serde_json::to_value([entry(1, "-1", true, WORLD4, None)]).unwrap();
        assert!(planned("nacl.deny_world_ingress", &port("22"), &full).is_err());
        assert!(planned("nacl.deny_world_ingress", &port("ssh"), &before).is_err());
        assert!(planned("nacl.allow", &port("22"), &before).is_err());
    }

    #[test]
    fn the_first_world_entry_covering_the_port_decides() {
        // AWS's default ACL: rule 100 allows everything from the world.
        let default = [entry(100, "-1", true, WORLD4, None)];
        let d = document_of(true, &default);
        assert_eq!((d["nacl.world_tcp_22"].as_str(), d["nacl.world_tcp_3389"].as_str()), ("open", "open"));
        assert_eq!(d["nacl.world_tcp_22_by"], "#100 allow -1/all from 0.0.0.0/0");
        // A DENY before it closes 22 only; an allow for a narrower network does not open it.
        let fixed = [
            entry(99, "6", false, WORLD4, Some((22, 22))),
            entry(100, "-1", true, WORLD4, None),
            entry(50, "6", true, "10.0.0.0/8", Some((3389, 3389))),
        ];
        let d = document_of(false, &fixed);
        assert_eq!((d["nacl.world_tcp_22"].as_str(), d["nacl.world_tcp_3389"].as_str()), ("closed", "open"));
        assert!(!d.contains_key("nacl.default"));
        // A range that includes the port opens it; IPv6's world counts too.
        let v6 = [entry(10, "6", true, WORLD6, Some((20, 30)))];
        assert_eq!(document_of(false, &v6)["nacl.world_tcp_22"], "open");
        assert_eq!(document_of(false, &v6)["nacl.world_tcp_3389"], "closed");
    }
}
