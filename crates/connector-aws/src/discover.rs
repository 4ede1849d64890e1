//! Discovery: the resources an account's keys can see in its regions, each becoming an instance
//! (`Vendor` 7, `RegionId` the region, `InstanceId` the resource id).

use connectors::{CloudAsset, CloudCredentials, Discovery};

use crate::clients::AwsError;
use crate::{Aws, Kind};

fn asset(kind: Kind, region: &str, id: &str, name: String) -> CloudAsset {
    CloudAsset {
        region_id: region.to_string(),
        instance_id: id.to_string(),
        instance_name: name,
        connector: kind.name().to_string(),
        locator: String::new(),
    }
}

/// Lists everything; a region counts as complete only if each of its listings succeeded (and,
/// for buckets, the account-wide bucket listing did).
pub(crate) async fn discover(aws: &Aws, credentials: &CloudCredentials, regions: &[String]) -> Discovery {
    let mut d = Discovery::default();
    let home = aws.clients(credentials, regions.first().map_or("us-east-1", String::as_str));
    let account = match home.sts.get_caller_identity().send().await {
        Ok(out) => out.account().unwrap_or_default().to_string(),
        Err(e) => {
            d.errors.push(format!("sts:GetCallerIdentity: {}", AwsError::from(e).message));
            return d;
        }
    };
    d.assets.push(asset(Kind::Iam, "global", &account, format!("AWS account {account}")));
    match crate::iam_user::list(&home).await {
        Ok(users) => {
            d.assets.extend(users.into_iter().map(|(id, name)| asset(Kind::IamUser, "global", &id, name)));
            d.complete_regions.push("global".into());
        }
        Err(e) => d.errors.push(format!("iam:ListUsers: {}", e.message)),
    }

    let buckets = match list_buckets(aws, credentials).await {
        Ok(b) => Some(b),
        Err(e) => {
            d.errors.push(format!("s3:ListBuckets: {}", e.message));
            None
        }
    };
    for region in regions {
        let c = aws.clients(credentials, region);
        let mut complete = buckets.is_some();
        let mut found = Vec::new();
        let mut add = |kind: Kind, what: &str, listed: Result<Vec<(String, String)>, AwsError>| match listed {
            Ok(list) => found.extend(list.into_iter().map(|(id, name)| asset(kind, region, &id, name))),
            Err(e) => {
                complete = false;
                d.errors.push(format!("{region} {what}: {}", e.message));
            }
        };
        // The per-region settings of the account are one instance each: EBS's named by the
        // account id, AWS Config's by `<account id>-config` (an instance is unique by id and region).
        let region_wide = |id: String, what: &str| vec![(id, format!("{what} of {account} in {region}"))];
        add(Kind::SecurityGroup, "ec2:DescribeSecurityGroups", security_groups(&c).await);
        add(Kind::Nacl, "ec2:DescribeNetworkAcls", crate::nacl::list(&c).await);
        add(Kind::Vpc, "ec2:DescribeVpcs", crate::vpc::list(&c).await);
        let ebs = c.ec2.get_ebs_encryption_by_default().send().await;
        add(
            Kind::Ebs,
            "ec2:GetEbsEncryptionByDefault",
            ebs.map(|_| region_wide(account.clone(), "EBS defaults")).map_err(AwsError::from),
        );
        add(Kind::Ec2, "ec2:DescribeInstances", instances(&c).await);
        add(Kind::Trail, "cloudtrail:DescribeTrails", crate::trail::list(&c, region).await);
        add(Kind::Kms, "kms:ListKeys", crate::kms::list(&c).await);
        add(Kind::Rds, "rds:DescribeDBInstances", crate::rds::list(&c).await);
        add(Kind::Efs, "elasticfilesystem:DescribeFileSystems", crate::efs::list(&c).await);
        let recorders = c.config.describe_configuration_recorders().send().await;
        add(
            Kind::Config,
            "config:DescribeConfigurationRecorders",
            recorders
                .map(|_| region_wide(crate::recorder::instance_id(&account), "AWS Config"))
                .map_err(AwsError::from),
        );
        for (bucket, bucket_region) in buckets.iter().flatten() {
            if bucket_region == region {
                found.push(asset(Kind::Bucket, region, bucket, bucket.clone()));
            }
        }
        d.assets.extend(found);
        if complete {
            d.complete_regions.push(region.clone());
        }
    }
    d
}

async fn list_buckets(aws: &Aws, credentials: &CloudCredentials) -> Result<Vec<(String, String)>, AwsError> {
    let c = aws.clients(credentials, "us-east-1");
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c.s3.list_buckets().set_continuation_token(token.take()).send().await?;
        for b in page.buckets() {
            let Some(name) = b.name() else { continue };
            let region = match b.bucket_region() {
                Some(r) if !r.is_empty() => r.to_string(),
                _ => crate::s3::region_of(&c, name).await?,
            };
            out.push((name.to_string(), region));
        }
        match page.continuation_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn security_groups(c: &crate::Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c.ec2.describe_security_groups().set_next_token(token.take()).send().await?;
        for g in page.security_groups() {
            let Some(id) = g.group_id() else { continue };
            let name = format!("{} ({})", g.group_name().unwrap_or(""), g.vpc_id().unwrap_or("no VPC"));
            out.push((id.to_string(), name));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn instances(c: &crate::Clients) -> Result<Vec<(String, String)>, AwsError> {
    use aws_sdk_ec2::types::InstanceStateName;
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c.ec2.describe_instances().set_next_token(token.take()).send().await?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let Some(id) = i.instance_id() else { continue };
            if matches!(i.state().and_then(|s| s.name()), Some(InstanceStateName::Terminated)) {
                continue;
            }
            let name = i.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).unwrap_or(id);
            out.push((id.to_string(), name.to_string()));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}
