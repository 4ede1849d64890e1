//! The AWS connector: security groups, network ACLs, VPC flow logs, S3 buckets, the account (IAM
//! password policy, root user, account-wide IAM and CloudTrail findings), IAM users, CloudTrail
//! trails, KMS keys, RDS instances, EFS file systems, AWS Config recorders, EBS encryption by
//! default and EC2 metadata options, read and repaired through the AWS SDK for Rust.
//!
//! Each resource kind is a [`Connector`] (`aws.sg`, `aws.s3`, `aws.iam`, …, see [`Kind`]) over
//! the same machinery: a resource is a set of *aspects* (a group's inbound rules, a
//! bucket's ACL, …), each read as the exact JSON of what the API answered (`null` for "there is
//! none"). A backup stores the aspects a repair's steps touch; a restore makes each aspect equal
//! to the stored one again, after checking that nobody changed it since the repair. A preview
//! reads the same aspects and plans, calling nothing that writes, the JSON each will read as
//! after the repair (each module's `planned`, next to its `apply` and `read`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clients;
mod discover;
mod ebs;
mod ec2;
mod efs;
mod iam;
mod iam_user;
mod kms;
mod nacl;
mod rds;
mod recorder;
mod s3;
mod sg;
mod trail;
mod vpc;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_smithy_http_client::tls;
use clients::{AwsError, Clients, Settings};
use connectors::{CloudCredentials, CloudIdentity, CloudProvider, Connector, ConnectorError, Discovery, Target};
use model::{Change, Document, PlannedChange, Snapshot, SnapshotItem, Step, Vendor};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The AWS regions an account may select (ListCloudVendorRegions).
pub const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "sa-east-1",
];

/// The kinds of AWS resource posture assesses; each is one connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SecurityGroup,
    Bucket,
    Iam,
    Ebs,
    Ec2,
    IamUser,
    Trail,
    Kms,
    Rds,
    Efs,
    Config,
    Vpc,
    Nacl,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::SecurityGroup,
        Kind::Bucket,
        Kind::Iam,
        Kind::Ebs,
        Kind::Ec2,
        Kind::IamUser,
        Kind::Trail,
        Kind::Kms,
        Kind::Rds,
        Kind::Efs,
        Kind::Config,
        Kind::Vpc,
        Kind::Nacl,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::SecurityGroup => "aws.sg",
            Kind::Bucket => "aws.s3",
            Kind::Iam => "aws.iam",
            Kind::Ebs => "aws.ebs",
            Kind::Ec2 => "aws.ec2",
            Kind::IamUser => "aws.iam_user",
            Kind::Trail => "aws.trail",
            Kind::Kms => "aws.kms",
            Kind::Rds => "aws.rds",
            Kind::Efs => "aws.efs",
            Kind::Config => "aws.config",
            Kind::Vpc => "aws.vpc",
            Kind::Nacl => "aws.nacl",
        }
    }

    /// The aspects an action changes (what its backup holds).
    fn aspects_of(self, action: &str) -> Option<&'static str> {
        let aspect = match (self, action) {
            (Kind::SecurityGroup, "sg.replace_world_ingress" | "sg.revoke_all_ingress") => sg::INGRESS,
            (Kind::SecurityGroup, "sg.revoke_all_egress") => sg::EGRESS,
            (Kind::Bucket, "s3.block_public_access") => s3::PUBLIC_ACCESS_BLOCK,
            (Kind::Bucket, "s3.acl_private") => s3::ACL,
            (Kind::Bucket, "s3.default_encryption") => s3::ENCRYPTION,
            (Kind::Bucket, "s3.enable_versioning") => s3::VERSIONING,
            (Kind::Bucket, "s3.deny_insecure_transport") => s3::POLICY,
            (Kind::Iam, "iam.password_policy") => iam::PASSWORD_POLICY,
            (Kind::Ebs, "ebs.enable_default_encryption") => ebs::ENCRYPTION_BY_DEFAULT,
            (Kind::Ec2, "ec2.require_imdsv2") => ec2::METADATA_OPTIONS,
            (Kind::IamUser, "iam_user.deactivate_idle_keys") => iam_user::ACCESS_KEYS,
            (Kind::Trail, "trail.multi_region") => trail::MULTI_REGION,
            (Kind::Trail, "trail.start_logging") => trail::LOGGING,
            (Kind::Trail, "trail.log_validation") => trail::LOG_VALIDATION,
            (Kind::Trail, "trail.encrypt") => trail::KMS,
            (Kind::Trail, "trail.bucket_logging") => trail::BUCKET_LOGGING,
            (Kind::Kms, "kms.enable_rotation") => kms::ROTATION,
            (Kind::Rds, "rds.private") => rds::PUBLIC,
            (Kind::Rds, "rds.auto_minor_version_upgrade") => rds::MINOR_UPGRADE,
            (Kind::Rds, "rds.backup_retention") => rds::BACKUP,
            (Kind::Config, "config.start_recorder") => recorder::RECORDING,
            (Kind::Vpc, "vpc.flow_logs") => vpc::FLOW_LOGS,
            (Kind::Nacl, "nacl.deny_world_ingress") => nacl::INGRESS,
            _ => return None,
        };
        Some(aspect)
    }

    async fn document(self, c: &Clients, id: &str) -> Result<Document, AwsError> {
        match self {
            Kind::SecurityGroup => sg::document(c, id).await,
            Kind::Bucket => s3::document(c, id).await,
            Kind::Iam => iam::document(c).await,
            Kind::Ebs => ebs::document(c).await,
            Kind::Ec2 => ec2::document(c, id).await,
            Kind::IamUser => iam_user::document(c, id).await,
            Kind::Trail => trail::document(c, id).await,
            Kind::Kms => kms::document(c, id).await,
            Kind::Rds => rds::document(c, id).await,
            Kind::Efs => efs::document(c, id).await,
            Kind::Config => recorder::document(c).await,
            Kind::Vpc => vpc::document(c, id).await,
            Kind::Nacl => nacl::document(c, id).await,
        }
    }

    async fn read(self, c: &Clients, id: &str, aspect: &str) -> Result<Value, AwsError> {
        match self {
            Kind::SecurityGroup => sg::read(c, id, aspect).await,
            Kind::Bucket => s3::read(c, id, aspect).await,
            Kind::Iam => iam::read(c).await,
            Kind::Ebs => ebs::read(c).await,
            Kind::Ec2 => ec2::read(c, id).await,
            Kind::IamUser => iam_user::read(c, id).await,
            Kind::Trail => trail::read(c, id, aspect).await,
            Kind::Kms => kms::read(c, id).await,
            Kind::Rds => rds::read(c, id, aspect).await,
            Kind::Efs => efs::read(c, id).await,
            Kind::Config => recorder::read(c).await,
            Kind::Vpc => vpc::read(c, id).await,
            Kind::Nacl => nacl::read(c, id).await,
        }
    }

    async fn apply(self, c: &Clients, id: &str, action: &str, args: &BTreeMap<String, String>) -> Result<(), AwsError> {
        match self {
            Kind::SecurityGroup => sg::apply(c, id, action, args).await,
            Kind::Bucket => s3::apply(c, id, action, args).await,
            Kind::Iam => iam::apply(c, action, args).await,
            Kind::Ebs => ebs::apply(c, action).await,
            Kind::Ec2 => ec2::apply(c, id, action).await,
            Kind::IamUser => iam_user::apply(c, id, action, args).await,
            Kind::Trail => trail::apply(c, id, action, args).await,
            Kind::Kms => kms::apply(c, id, action).await,
            Kind::Rds => rds::apply(c, id, action, args).await,
            Kind::Efs => Err(AwsError::other(format!("{action}: an EFS file system is read only"))),
            Kind::Config => recorder::apply(c, action).await,
            Kind::Vpc => vpc::apply(c, id, action, args).await,
            Kind::Nacl => nacl::apply(c, id, action, args).await,
        }
    }

    /// What a plan of `action` needs to know besides the aspect itself, read (never written)
    /// once for the step.
    async fn facts(
        self,
        c: &Clients,
        id: &str,
        action: &str,
        args: &BTreeMap<String, String>,
    ) -> Result<Facts, AwsError> {
        let mut facts = Facts::default();
        match (self, action) {
            (Kind::IamUser, "iam_user.deactivate_idle_keys") => facts.idle_days = iam_user::idle_days(c, id).await?,
            (Kind::Trail, "trail.encrypt") => {
                if let Some(key) = args.get("kms_key") {
                    facts.kms_key_arn = Some(trail::key_arn(c, key).await?);
                }
            }
            (Kind::Config, _) => facts.has_recorder = recorder::exists(c).await?,
            _ => {}
        }
        Ok(facts)
    }

    /// What `aspect` will read as (exactly the JSON of [`Kind::read`]) after [`Kind::apply`]
    /// carried `action` out on the resource `id` whose aspect reads as `before`. Pure: one
    /// function per module, next to its `apply` and `read`.
    fn planned(
        self,
        id: &str,
        aspect: &str,
        action: &str,
        args: &BTreeMap<String, String>,
        before: &Value,
        facts: &Facts,
    ) -> Result<Value, AwsError> {
        if self.aspects_of(action) != Some(aspect) {
            return Err(AwsError::other(format!("{action} does not change the {aspect} of {}", self.name())));
        }
        match self {
            Kind::SecurityGroup => sg::planned(action, args, before),
            Kind::Bucket => s3::planned(id, action, args, before),
            Kind::Iam => iam::planned(action, args, before),
            Kind::Ebs => ebs::planned(action),
            Kind::Ec2 => ec2::planned(action, before),
            Kind::IamUser => iam_user::planned(action, args, before, &facts.idle_days),
            Kind::Trail => trail::planned(action, args, facts.kms_key_arn.as_deref()),
            Kind::Kms => kms::planned(action),
            Kind::Rds => rds::planned(action, args),
            Kind::Efs => Err(AwsError::other(format!("{action}: an EFS file system is read only"))),
            Kind::Config => recorder::planned(action, facts.has_recorder),
            Kind::Vpc => vpc::planned(action, args, before),
            Kind::Nacl => nacl::planned(action, args, before),
        }
    }

    /// What `aspect` will read as after every step that changes it, in order, from `before`
    /// (`facts`: each step's, see [`Kind::facts`]).
    fn plan(self, id: &str, aspect: &str, steps: &[Step], facts: &[Facts], before: &Value) -> Result<Value, AwsError> {
        let mut state = before.clone();
        for (step, facts) in steps.iter().zip(facts) {
            let Step::Cloud { action, args } = step else { continue };
            if self.aspects_of(action) == Some(aspect) {
                state = self.planned(id, aspect, action, args, &state, facts)?;
            }
        }
        Ok(state)
    }

    async fn write(self, c: &Clients, id: &str, aspect: &str, want: &Value) -> Result<(), AwsError> {
        match self {
            Kind::SecurityGroup => sg::write(c, id, aspect, want).await,
            Kind::Bucket => s3::write(c, id, aspect, want).await,
            Kind::Iam => iam::write(c, want).await,
            Kind::Ebs => ebs::write(c, want).await,
            Kind::Ec2 => ec2::write(c, id, want).await,
            Kind::IamUser => iam_user::write(c, id, want).await,
            Kind::Trail => trail::write(c, id, aspect, want).await,
            Kind::Kms => kms::write(c, id, want).await,
            Kind::Rds => rds::write(c, id, aspect, want).await,
            Kind::Efs => Err(AwsError::other("an EFS file system is read only")),
            Kind::Config => recorder::write(c, want).await,
            Kind::Vpc => vpc::write(c, id, want).await,
            Kind::Nacl => nacl::write(c, id, want).await,
        }
    }
}

/// What planning a step needs to know besides the aspect it changes (see [`Kind::facts`]).
#[derive(Clone, Debug, Default)]
struct Facts {
    /// `iam_user.deactivate_idle_keys`: each access key's idle days.
    idle_days: BTreeMap<String, i64>,
    /// `trail.encrypt`: the ARN of the key given, as CloudTrail will describe it.
    kms_key_arn: Option<String>,
    /// `config.*`: whether the region has a configuration recorder.
    has_recorder: bool,
}

/// The AWS side shared by the connectors and the provider: where calls go, the HTTPS
/// client, a small runtime for the SDK's futures, and the clients of each account and region.
pub struct Aws {
    settings: Settings,
    runtime: tokio::runtime::Runtime,
    clients: Mutex<HashMap<(String, String), Clients>>,
}

impl Aws {
    /// AWS itself (`endpoint_url` None) or an endpoint that serves every service (moto,
    /// LocalStack).
    pub fn new(endpoint_url: Option<String>) -> std::io::Result<Arc<Aws>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("posture-aws")
            .enable_all()
            .build()?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        Ok(Arc::new(Aws { settings: Settings { endpoint_url, http }, runtime, clients: Mutex::new(HashMap::new()) }))
    }

    /// One connector per kind.
    pub fn connectors(self: &Arc<Self>) -> Vec<Arc<dyn Connector>> {
        Kind::ALL.iter().map(|k| Arc::new(AwsConnector { kind: *k, aws: self.clone() }) as Arc<dyn Connector>).collect()
    }

    /// The clients of these keys in this region (built on first use).
    fn clients(&self, credentials: &CloudCredentials, region: &str) -> Clients {
        // Keyed by a digest of both halves of the key, so a changed secret gets new clients.
        let key =
            (digest(format!("{}\0{}", credentials.secret_id, credentials.secret_key).as_bytes()), region.to_string());
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        cache.entry(key).or_insert_with(|| Clients::new(&self.settings, credentials, region)).clone()
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The JSON is canonical (serde_json's maps are sorted; lists are sorted where they are read).
fn state_digest(v: &Value) -> String {
    digest(v.to_string().as_bytes())
}

/// One kind of AWS resource as a connector.
struct AwsConnector {
    kind: Kind,
    aws: Arc<Aws>,
}

impl AwsConnector {
    fn clients(&self, target: &Target) -> Result<Clients, ConnectorError> {
        let credentials = target.credentials.as_ref().ok_or_else(|| {
            ConnectorError::new("CloudAccountNotFound", "the instance has no cloud account to reach it through")
        })?;
        Ok(self.aws.clients(credentials, &target.region_id))
    }

    /// The aspects the steps change, in the order they first change them (`stage`: the error
    /// code of a step that is not this kind's).
    fn aspects(&self, steps: &[Step], stage: &'static str) -> Result<Vec<&'static str>, ConnectorError> {
        let mut aspects = Vec::new();
        for step in steps {
            let aspect = match step {
                Step::Cloud { action, .. } => self.kind.aspects_of(action),
                _ => None,
            }
            .ok_or_else(|| ConnectorError::new(stage, format!("{step:?} is not a step for {}", self.kind.name())))?;
            if !aspects.contains(&aspect) {
                aspects.push(aspect);
            }
        }
        Ok(aspects)
    }

    /// Puts every item back as the snapshot holds it (used by restore and by a failed apply).
    async fn put_back(&self, c: &Clients, id: &str, snapshot: &Snapshot) -> Result<(), AwsError> {
        for item in &snapshot.items {
            let want = stored_state(item)?;
            if self.kind.read(c, id, &item.key).await? != want {
                self.kind.write(c, id, &item.key, &want).await?;
            }
        }
        Ok(())
    }
}

fn stored_state(item: &SnapshotItem) -> Result<Value, AwsError> {
    serde_json::from_slice(&item.data).map_err(|e| AwsError::other(format!("snapshot item {}: {e}", item.key)))
}

impl Connector for AwsConnector {
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// The one aspect the steps change (several aspects, or an unknown step: the whole resource).
    fn scope(&self, steps: &[Step]) -> String {
        match self.aspects(steps, "BackUpError").as_deref() {
            Ok([aspect]) => format!("aspect:{aspect}"),
            _ => connectors::WHOLE_INSTANCE.to_string(),
        }
    }

    fn fetch(&self, target: &Target) -> Result<Document, ConnectorError> {
        let c = self.clients(target)?;
        self.aws.block_on(self.kind.document(&c, &target.instance_id)).map_err(|e| e.during("FetchError"))
    }

    /// Each aspect the steps change, read as backup reads it, and what it will read as after
    /// apply: planned from what was read (and, for a few actions, read-only facts such as a
    /// key's idle days), without calling any API that changes anything.
    fn preview(&self, target: &Target, change: &Change) -> Result<Vec<PlannedChange>, ConnectorError> {
        const STAGE: &str = "PreviewError";
        let aspects = self.aspects(&change.steps, STAGE)?;
        let c = self.clients(target)?;
        let id = &target.instance_id;
        self.aws.block_on(async {
            let mut facts = Vec::new();
            for step in &change.steps {
                facts.push(match step {
                    Step::Cloud { action, args } => {
                        self.kind.facts(&c, id, action, args).await.map_err(|e| e.during(STAGE))?
                    }
                    _ => Facts::default(),
                });
            }
            let mut planned = Vec::new();
            for aspect in aspects {
                let before = self.kind.read(&c, id, aspect).await.map_err(|e| e.during(STAGE))?;
                let after = self.kind.plan(id, aspect, &change.steps, &facts, &before).map_err(|e| e.during(STAGE))?;
                if after != before {
                    planned.push(PlannedChange::CloudState { aspect: aspect.to_string(), before, after });
                }
            }
            Ok(planned)
        })
    }

    fn backup(&self, target: &Target, change: &Change) -> Result<Snapshot, ConnectorError> {
        let aspects = self.aspects(&change.steps, "BackUpError")?;
        let c = self.clients(target)?;
        self.aws.block_on(async {
            let mut items = Vec::new();
            for aspect in aspects {
                let state =
                    self.kind.read(&c, &target.instance_id, aspect).await.map_err(|e| e.during("BackUpError"))?;
                items.push(SnapshotItem {
                    key: aspect.to_string(),
                    existed: !state.is_null(),
                    has_content: true,
                    data: state.to_string().into_bytes(),
                    meta: BTreeMap::new(),
                    post_digest: None,
                });
            }
            Ok(Snapshot { items })
        })
    }

    fn apply(&self, target: &Target, change: &Change, snapshot: &mut Snapshot) -> Result<(), ConnectorError> {
        let c = self.clients(target)?;
        let id = &target.instance_id;
        self.aws.block_on(async {
            for step in &change.steps {
                let Step::Cloud { action, args } = step else { continue };
                if let Err(e) = self.kind.apply(&c, id, action, args).await {
                    // Nothing is left half-changed: what the earlier steps did is put back.
                    if let Err(undo) = self.put_back(&c, id, snapshot).await {
                        tracing::error!(instance = %id, error = %undo.message, "could not undo a failed repair");
                    }
                    return Err(e.during("RepairError"));
                }
            }
            for item in &mut snapshot.items {
                let now = self.kind.read(&c, id, &item.key).await.map_err(|e| e.during("RepairError"))?;
                item.post_digest = Some(state_digest(&now));
            }
            Ok(())
        })
    }

    fn restore(&self, target: &Target, _change: &Change, snapshot: &Snapshot) -> Result<(), ConnectorError> {
        let c = self.clients(target)?;
        let id = &target.instance_id;
        self.aws.block_on(async {
            // Refuse before changing anything if someone changed an aspect after the repair.
            for item in &snapshot.items {
                let Some(expected) = &item.post_digest else { continue };
                let now = self.kind.read(&c, id, &item.key).await.map_err(|e| e.during("RollbackError"))?;
                if &state_digest(&now) != expected {
                    return Err(ConnectorError::new(
                        "ConfigChangedSinceRepair",
                        format!("the {} of {id} changed after the repair; nothing was rolled back", item.key),
                    ));
                }
            }
            self.put_back(&c, id, snapshot).await.map_err(|e| e.during("RollbackError"))
        })
    }

    fn matches(&self, target: &Target, snapshot: &Snapshot) -> Result<bool, ConnectorError> {
        let c = self.clients(target)?;
        self.aws.block_on(async {
            for item in &snapshot.items {
                let want = stored_state(item).map_err(|e| e.during("RollbackError"))?;
                let now =
                    self.kind.read(&c, &target.instance_id, &item.key).await.map_err(|e| e.during("FetchError"))?;
                if now != want {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}

impl CloudProvider for Aws {
    fn vendor(&self) -> Vendor {
        Vendor::Aws
    }

    fn regions(&self) -> Vec<String> {
        REGIONS.iter().map(|r| r.to_string()).collect()
    }

    fn verify(&self, credentials: &CloudCredentials, regions: &[String]) -> Result<CloudIdentity, ConnectorError> {
        let region = regions.first().map_or("us-east-1", String::as_str);
        let c = self.clients(credentials, region);
        let out = self.block_on(c.sts.get_caller_identity().send()).map_err(|e| {
            let e = AwsError::from(e);
            match e.failure {
                clients::Failure::Transient => e.during("CloudUnavailable"),
                _ => ConnectorError::new("CloudAccessKeyInvalid", format!("AWS {}: {}", e.code, e.message)),
            }
        })?;
        Ok(CloudIdentity {
            account_uid: out.account().unwrap_or_default().to_string(),
            user_name: out.arn().unwrap_or_default().to_string(),
        })
    }

    fn discover(&self, credentials: &CloudCredentials, regions: &[String]) -> Discovery {
        self.block_on(discover::discover(self, credentials, regions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every AWS item of the catalog names a kind this crate has, and each of its steps an
    /// action of that kind: a typo in aws.toml fails here, not at a user's first repair.
    #[test]
    fn every_catalog_action_is_one_the_connector_carries_out() {
        let catalog = catalog::Catalog::builtin().unwrap();
        let items: Vec<_> = catalog.all().filter(|c| c.asset.starts_with("aws.")).collect();
        assert!(items.len() >= 10);
        for item in items {
            let kind = Kind::ALL.iter().find(|k| k.name() == item.asset).unwrap_or_else(|| panic!("{}", item.asset));
            for step in item.render_steps(&[]) {
                let Step::Cloud { action, .. } = &step else { panic!("{}: {step:?} is not a cloud step", item.id) };
                assert!(
                    kind.aspects_of(action).is_some(),
                    "check {}: {action} is not an action of {}",
                    item.id,
                    item.asset
                );
            }
        }
    }

    /// An aspect as `read` answers it, for the plans below.
    fn read_as(kind: Kind, aspect: &str) -> Value {
        use serde_json::json;
        match (kind, aspect) {
            (Kind::SecurityGroup, _) => json!([
                {"proto": "-1", "from": null, "to": null, "source": "cidr4:0.0.0.0/0", "description": null},
                {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:0.0.0.0/0", "description": "ssh"},
                {"proto": "tcp", "from": 3389, "to": 3389, "source": "cidr6:::/0", "description": null},
            ]),
            (Kind::Bucket, s3::PUBLIC_ACCESS_BLOCK) => Value::Null,
            (Kind::Bucket, s3::ACL) => json!({"Owner": {"ID": "c0ffee"}, "Grants": [
                {"Grantee": {"Type": "CanonicalUser", "ID": "c0ffee", "URI": null, "EmailAddress": null}, "Permission": "FULL_CONTROL"},
                {"Grantee": {"Type": "Group", "ID": null, "URI": "http://acs.amazonaws.com/groups/global/AllUsers", "EmailAddress": null}, "Permission": "READ"},
            ]}),
            (Kind::Bucket, s3::ENCRYPTION) => Value::Null,
            (Kind::Bucket, s3::VERSIONING) => json!({"Status": null, "MFADelete": null}),
            (Kind::Bucket, s3::POLICY) => Value::Null,
            (Kind::Iam, _) => json!({
                "MinimumPasswordLength": 8, "MaxPasswordAge": null, "PasswordReusePrevention": null,
                "RequireSymbols": false, "RequireNumbers": false, "RequireUppercaseCharacters": false,
                "RequireLowercaseCharacters": false, "AllowUsersToChangePassword": false, "HardExpiry": false,
            }),
            (Kind::Ebs, _) => json!({"EbsEncryptionByDefault": false}),
            (Kind::Ec2, _) => {
                json!({"HttpTokens": "optional", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1})
            }
            (Kind::IamUser, _) => json!([{"AccessKeyId": "AKIAIDLE", "Status": "Active"}]),
            (Kind::Trail, trail::MULTI_REGION) => json!({"IsMultiRegionTrail": false}),
            (Kind::Trail, trail::LOGGING) => json!({"IsLogging": false}),
            (Kind::Trail, trail::LOG_VALIDATION) => json!({"LogFileValidationEnabled": false}),
            (Kind::Trail, trail::KMS) => json!({"KmsKeyId": null}),
            (Kind::Trail, trail::BUCKET_LOGGING) => Value::Null,
            (Kind::Kms, _) => json!({"KeyRotationEnabled": false}),
            (Kind::Rds, rds::PUBLIC) => json!({"PubliclyAccessible": true}),
            (Kind::Rds, rds::MINOR_UPGRADE) => json!({"AutoMinorVersionUpgrade": false}),
            (Kind::Rds, rds::BACKUP) => json!({"BackupRetentionPeriod": 1}),
            (Kind::Config, _) => json!({"Recording": false}),
            (Kind::Vpc, _) => json!([]),
            (Kind::Nacl, _) => json!([
                {"rule": 100, "protocol": "-1", "allow": true, "cidr": "0.0.0.0/0", "from": null, "to": null, "icmp": null},
            ]),
            (kind, aspect) => panic!("no sample of the {aspect} of {}", kind.name()),
        }
    }

    /// The facts a preview would read for these samples.
    fn facts_of_samples() -> Facts {
        Facts {
            idle_days: BTreeMap::from([("AKIAIDLE".to_string(), 400)]),
            kms_key_arn: Some("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab".into()),
            has_recorder: true,
        }
    }

    /// A value for each parameter the catalog's AWS items need one for (the others have defaults).
    fn sample_param(name: &str) -> &'static str {
        match name {
            "AllowedCidr" => "10.0.0.0/8",
            "KmsKeyId" => "alias/cloudtrail",
            "TargetBucket" => "access-logs",
            "FlowLogBucketArn" => "arn:aws:s3:::flow-logs",
            other => panic!("no sample value for the parameter {other}"),
        }
    }

    /// Every action of every AWS item of the catalog has a plan: from a realistic state of the
    /// aspect it changes it plans a state of the same shape, and a changed one (every sample is
    /// a state the repair changes).
    #[test]
    fn every_catalog_action_has_a_plan() {
        let catalog = catalog::Catalog::builtin().unwrap();
        let mut planned = 0;
        for item in catalog.all().filter(|c| c.asset.starts_with("aws.")) {
            let Some(repair) = &item.repair else { continue };
            let kind = *Kind::ALL.iter().find(|k| k.name() == item.asset).unwrap();
            let params: Vec<(String, String)> = repair
                .params
                .iter()
                .map(|p| (p.name.clone(), p.default.clone().unwrap_or_else(|| sample_param(&p.name).to_string())))
                .collect();
            for step in item.render_steps(&params) {
                let Step::Cloud { action, args } = &step else { panic!("{}: {step:?}", item.id) };
                let aspect = kind.aspects_of(action).unwrap();
                let before = read_as(kind, aspect);
                let after = kind
                    .planned("r-1", aspect, action, args, &before, &facts_of_samples())
                    .unwrap_or_else(|e| panic!("check {}: {action} has no plan: {}", item.id, e.message));
                assert_ne!(after, before, "check {}: {action} plans no change from {before}", item.id);
                if !before.is_null() {
                    assert_eq!(
                        std::mem::discriminant(&after),
                        std::mem::discriminant(&before),
                        "check {}: {action} plans {after} from {before}",
                        item.id
                    );
                }
                planned += 1;
            }
        }
        assert!(planned >= 20, "{planned} actions planned");
        // An action of another kind, or of another aspect, has no plan.
        let none = BTreeMap::new();
        let facts = Facts::default();
        assert!(Kind::Bucket.planned("b", s3::ACL, "sg.revoke_all_ingress", &none, &Value::Null, &facts).is_err());
        assert!(Kind::Bucket.planned("b", s3::ACL, "s3.block_public_access", &none, &Value::Null, &facts).is_err());
        assert!(Kind::Efs.planned("fs-1", "x", "efs.encrypt", &none, &Value::Null, &facts).is_err());
    }

    /// Two steps on one aspect compose (the second is planned from the first's result); steps
    /// on another aspect leave it alone.
    #[test]
    fn steps_on_one_aspect_compose_in_order() {
        let step = |action: &str, args: &[(&str, &str)]| Step::Cloud {
            action: action.to_string(),
            args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let steps = [
            step("sg.replace_world_ingress", &[("ports", "22"), ("cidr", "10.0.0.0/8")]),
            step("sg.revoke_all_egress", &[]),
            step("sg.replace_world_ingress", &[("ports", "3389"), ("cidr", "192.168.0.0/16")]),
        ];
        let facts = vec![Facts::default(); steps.len()];
        let before = serde_json::json!([
            {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:0.0.0.0/0", "description": "ssh"},
            {"proto": "tcp", "from": 3389, "to": 3389, "source": "cidr4:0.0.0.0/0", "description": null},
        ]);
        let after = Kind::SecurityGroup.plan("sg-1", sg::INGRESS, &steps, &facts, &before).unwrap();
        assert_eq!(
            after,
            serde_json::json!([
                {"proto": "tcp", "from": 22, "to": 22, "source": "cidr4:10.0.0.0/8", "description": "ssh"},
                {"proto": "tcp", "from": 3389, "to": 3389, "source": "cidr4:192.168.0.0/16", "description": null},
            ])
        );
        let egress = serde_json::json!([{"proto": "-1", "from": null, "to": null, "source": "cidr4:0.0.0.0/0", "description": null}]);
        assert_eq!(
            Kind::SecurityGroup.plan("sg-1", sg::EGRESS, &steps, &facts, &egress).unwrap(),
            serde_json::json!([])
        );
        // Two password policy steps: the second keeps what the first set.
        let steps = [
            step("iam.password_policy", &[("MinimumPasswordLength", "14")]),
            step("iam.password_policy", &[("RequireSymbols", "true")]),
        ];
        let after = Kind::Iam.plan("acct", iam::PASSWORD_POLICY, &steps, &facts, &Value::Null).unwrap();
        assert_eq!((after["MinimumPasswordLength"].clone(), after["RequireSymbols"].clone()), (14.into(), true.into()));
    }

    #[test]
    fn digests_are_canonical_whatever_the_key_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": [1, 2], "b": 1}"#).unwrap();
        assert_eq!(state_digest(&a), state_digest(&b));
        assert_ne!(state_digest(&a), state_digest(&Value::Null));
    }

    #[test]
    fn errors_are_classified_for_the_engine() {
        use clients::{AwsError, Failure};
        let e = |failure| AwsError { failure, code: "X".into(), message: "m".into() };
        assert!(e(Failure::Gone).during("RepairError").freed);
        assert!(e(Failure::Transient).during("RepairError").retryable);
        assert_eq!(e(Failure::Refused).during("RepairError").code, "CloudAccessDenied");
        assert_eq!(e(Failure::Other).during("RollbackError").code, "RollbackError");
        assert_eq!(clients::api_region("global"), "us-east-1");
        assert_eq!(
            clients::xml_field("<E><Code>SignatureDoesNotMatch</Code></E>", "Code").as_deref(),
            Some("SignatureDoesNotMatch")
        );
    }
}
