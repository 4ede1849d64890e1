"""The CIS AWS Foundations items beyond the first fourteen (network ACLs, flow logs, the default
group's outbound rules, bucket policies, the account's root user and IAM, IAM users, CloudTrail,
KMS, RDS, EFS, AWS Config), against a real moto_server.

Every repairable item goes REPAIR → REPAIR_SUCCESS_VERIFIED → ROLLBACK → ROLL_BACK_VERIFIED with
the state read back through boto3; every detection-only item is seen failing and, after the
resource is fixed through boto3, passing. Where moto cannot produce one side (its root user has
no keys and no MFA, it has no MFA delete), the test says so and checks the side it can.

moto has no clock to move, so the items about credential ages (45 and 90 days) run against an
in-process moto whose IAM backend the test ages directly (`aged_moto`)."""
import json
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Optional

import pytest

from conftest import Server, free_port
from test_aws import (ACCOUNT, REGION, Item, absent_on, check_all, new_instance, register, repair_then_roll_back, result,
                      run_task, sas)

WORLD = "0.0.0.0/0"
CONFIG = f"{ACCOUNT}-config"  # the instance of a region's AWS Config settings


# --- seeds and readers ---------------------------------------------------------------------


def default_vpc(moto):
    (v,) = moto.client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    return v["VpcId"]


def default_group_egress(moto):
    ec2 = moto.client("ec2")
    (g,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]},
                                                 {"Name": "vpc-id", "Values": [default_vpc(moto)]}])["SecurityGroups"]
    return g["GroupId"], REGION


def egress(moto, group_id):
    (g,) = moto.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return sorted((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIp"])
                  for p in g["IpPermissionsEgress"] for r in p.get("IpRanges", []))


def default_nacl(moto):
    (a,) = moto.client("ec2").describe_network_acls(Filters=[{"Name": "default", "Values": ["true"]},
                                                             {"Name": "vpc-id", "Values": [default_vpc(moto)]}])["NetworkAcls"]
    return a["NetworkAclId"], REGION


def nacl_ingress(moto, acl_id):
    (a,) = moto.client("ec2").describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
    return sorted((e["RuleNumber"], e["Protocol"], e["RuleAction"], e.get("CidrBlock") or e.get("Ipv6CidrBlock"),
                   (e.get("PortRange") or {}).get("From"), (e.get("PortRange") or {}).get("To"))
                  for e in a["Entries"] if not e["Egress"] and e["RuleNumber"] != 32767)


def denies_before_allow(port):
    def fixed(entries):
        denies = [e for e in entries if e[2] == "deny" and e[3] == WORLD and e[4] == port == e[5]]
        allow = [e for e in entries if e[2] == "allow" and e[3] == WORLD]
        return bool(denies) and all(d[0] < a[0] for d in denies for a in allow) and (100, "-1", "allow", WORLD, None, None) in entries
    return fixed


def flow_log_bucket(moto):
    moto.client("s3").create_bucket(Bucket="posture-flow-logs")
    return default_vpc(moto), REGION


def flow_logs(moto, vpc):
    logs = moto.client("ec2").describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]
    return sorted((f["TrafficType"], f["LogDestination"]) for f in logs)


def bucket_with_policy(moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="posture-plain-http")
    s3.put_bucket_policy(Bucket="posture-plain-http", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadForPartner", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::posture-plain-http/*"}]}))
    return "posture-plain-http", REGION


def bucket_policy(moto, bucket):
    text = absent_on("NoSuchBucketPolicy", lambda: moto.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    return json.loads(text) if text else None


def denies_http(policy):
    sids = [s.get("Sid") for s in policy["Statement"]]
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    return "ReadForPartner" in sids and len(deny) == 1 and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def trail(moto, name="posture-trail", **extra):
    moto.client("s3").create_bucket(Bucket=f"{name}-logs")
    moto.client("cloudtrail").create_trail(Name=name, S3BucketName=f"{name}-logs", **extra)
    return name, REGION


def trail_settings(moto, name):
    (t,) = moto.client("cloudtrail").describe_trails(trailNameList=[name])["trailList"]
    return {"multi": t.get("IsMultiRegionTrail"), "validation": t.get("LogFileValidationEnabled"), "kms": t.get("KmsKeyId") or None}


def trail_logging(moto, name):
    return moto.client("cloudtrail").get_trail_status(Name=name)["IsLogging"]


def trail_with_log_target(moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="posture-access-logs")
    s3.put_bucket_acl(Bucket="posture-access-logs", ACL="log-delivery-write")
    return trail(moto)


def bucket_logging(moto, name):
    return moto.client("s3").get_bucket_logging(Bucket=f"{name}-logs").get("LoggingEnabled")


def kms_key(moto):
    return moto.client("kms").create_key(Description="posture")["KeyMetadata"]["KeyId"], REGION


def rotation(moto, key):
    return moto.client("kms").get_key_rotation_status(KeyId=key)["KeyRotationEnabled"]


def database(moto, name="posture-db", **overrides):
    settings = dict(PubliclyAccessible=True, AutoMinorVersionUpgrade=False, BackupRetentionPeriod=0, StorageEncrypted=False)
    settings.update(overrides)
    moto.client("rds").create_db_instance(DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro",
                                          MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20, **settings)
    return name, REGION


def db_settings(moto, name):
    (i,) = moto.client("rds").describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
    return {"public": i.get("PubliclyAccessible", False), "minor": i["AutoMinorVersionUpgrade"], "backups": i["BackupRetentionPeriod"]}


def stopped_recorder(moto, all_supported=True):
    moto.client("s3").create_bucket(Bucket="posture-config")
    cfg = moto.client("config")
    cfg.put_configuration_recorder(ConfigurationRecorder={
        "name": "default", "roleARN": f"arn:aws:iam::{ACCOUNT}:role/config",
        "recordingGroup": {"allSupported": all_supported, "includeGlobalResourceTypes": all_supported,
                           **({} if all_supported else {"resourceTypes": ["AWS::EC2::Instance"]})}})
    cfg.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": "posture-config"})
    return CONFIG, REGION


def recording(moto, _id):
    return [s["recording"] for s in moto.client("config").describe_configuration_recorder_status()["ConfigurationRecordersStatus"]]


def iam_user(moto, name, console=False, keys=0):
    iam = moto.client("iam")
    iam.create_user(UserName=name)
    if console:
        iam.create_login_profile(UserName=name, Password="Not-a-secret-123!")
    for _ in range(keys):
        iam.create_access_key(UserName=name)
    return name, "global"


def key_statuses(moto, user):
    return sorted(k["Status"] for k in moto.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"])


# --- repairable items ----------------------------------------------------------------------


REPAIRS = [
    Item(2005, default_group_egress, egress, lambda s: s == []),
    Item(2015, bucket_with_policy, bucket_policy, denies_http),
    Item(2051, trail, trail_settings, lambda s: s["multi"] is True and s["validation"] is False),
    Item(2052, trail, trail_logging, lambda s: s is True),
    Item(2053, trail, trail_settings, lambda s: s["validation"] is True and s["multi"] is False),
    Item(2054, trail, trail_settings, lambda s: s["kms"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
           params=(("KmsKeyId", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"),)),
    Item(2055, trail_with_log_target, bucket_logging,
           lambda s: s == {"TargetBucket": "posture-access-logs", "TargetPrefix": "cloudtrail-access/"},
           params=(("TargetBucket", "posture-access-logs"),)),
    Item(2061, kms_key, rotation, lambda s: s is True),
    Item(2082, database, db_settings, lambda s: s["minor"] is True and s["public"] is True),
    Item(2083, database, db_settings, lambda s: s["public"] is False and s["backups"] == 0),
    Item(2084, database, db_settings, lambda s: s["backups"] == 14, params=(("BackupRetentionPeriod", "14"),)),
    Item(2101, stopped_recorder, recording, lambda s: s == [True]),
    Item(2111, flow_log_bucket, flow_logs, lambda s: s == [("REJECT", "arn:aws:s3:::posture-flow-logs")],
           params=(("FlowLogBucketArn", "arn:aws:s3:::posture-flow-logs"),)),
    Item(2121, default_nacl, nacl_ingress, denies_before_allow(22)),
    Item(2122, default_nacl, nacl_ingress, denies_before_allow(3389)),
]


@pytest.mark.parametrize("item", REPAIRS, ids=lambda i: str(i.check_id))
def test_every_new_aws_repair_is_verified_and_rolls_back_exactly(aws_server, moto, item):
    repair_then_roll_back(aws_server, moto, item)


def test_two_repairs_of_one_trail_roll_back_in_either_order(aws_server, moto):
    """Each trail setting is its own aspect: rolling back the first repair leaves the second's."""
    client = sas(aws_server)
    name, region = trail(moto)
    register(client, moto)
    check_all(client)
    first = run_task(client, 2051, "REPAIR", name, region)
    second = run_task(client, 2053, "REPAIR", name, region)
    assert (first["Status"], second["Status"]) == ("REPAIR_SUCCESS_VERIFIED", "REPAIR_SUCCESS_VERIFIED")
    assert run_task(client, 2051, "ROLLBACK", name, region, repair_task=first["TaskId"])["Status"] == "ROLL_BACK_VERIFIED"
    assert trail_settings(moto, name) == {"multi": False, "validation": True, "kms": None}
    assert run_task(client, 2053, "ROLLBACK", name, region, repair_task=second["TaskId"])["Status"] == "ROLL_BACK_VERIFIED"
    assert trail_settings(moto, name) == {"multi": False, "validation": False, "kms": None}


def test_a_trail_whose_bucket_cannot_be_read_still_answers_its_own_items(aws_server, moto):
    """A trail's bucket is often in another account: the bucket's items (2055, 2056) do not
    apply, the trail's own items still answer."""
    client = sas(aws_server)
    name, region = trail(moto)
    moto.client("s3").delete_bucket(Bucket=f"{name}-logs")
    register(client, moto)
    check_all(client)
    assert result(client, 2052, name, region)["Status"] == "NOT_PASS"
    for bucket_item in (2055, 2056):
        rows = client.call("ListCheckInstanceResult", {"CheckId": bucket_item, "PageSize": 100})["BasicData"]
        assert name not in {r["InstanceId"] for r in rows}, rows


def test_bad_repair_parameters_are_refused_before_anything_changes(aws_server, moto):
    client = sas(aws_server)
    name, region = trail(moto)
    vpc, _ = flow_log_bucket(moto)
    register(client, moto)
    check_all(client)
    from test_conformance import expect_error
    good_arn = {"Name": "FlowLogBucketArn", "Value": "arn:aws:s3:::posture-flow-logs"}
    for check_id, instance, param, bad, others in (
        (2054, name, "KmsKeyId", "not-a-key", []),
        (2054, name, "KmsKeyId", "alias/x y", []),
        (2055, name, "TargetBucket", "Bad_Bucket", []),
        (2111, vpc, "FlowLogBucketArn", "arn:aws:s3:::", []),
        (2111, vpc, "TrafficType", "SOME", [good_arn]),
    ):
        req = {"CheckId": check_id, "Type": "REPAIR", "DimensionType": "INSTANCE",
               "OperationTaskInstances": [{"InstanceId": instance, "RegionId": region}],
               "RepairTempParam": [{"Name": param, "Value": bad}, *others]}
        expect_error(lambda: client.call("SubmitOperationTask", req), f"ErrorParamFormat.{param}", 400)
    assert trail_settings(moto, name)["kms"] is None and flow_logs(moto, vpc) == []


# --- detection-only items ------------------------------------------------------------------


@dataclass
class Detect:
    check_id: int
    seed: Callable                      # moto -> (instance id, region)
    first: str                          # the status after the seed
    change: Optional[Callable] = None   # (moto, instance id) -> None: flips the verdict
    note: str = ""


def attach_role_policy(policy_arn):
    def change(moto, _id):
        iam = moto.client("iam")
        iam.create_role(RoleName="posture-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
        iam.attach_role_policy(RoleName="posture-role", PolicyArn=policy_arn)
    return change


def attach_admin_policy(moto, _id):
    iam = moto.client("iam")
    arn = iam.create_policy(PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    attach_role_policy(arn)(moto, _id)


CERT = """-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUdOBRpR3Lj3w3SgmOfoH4+kzBRbswCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJcG9zdHVyZS1hMB4XDTI2MDEwMTAwMDAwMFoXDTI3MDEwMTAw
MDAwMFowFDESMBAGA1UEAwwJcG9zdHVyZS1hMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAE
-----END CERTIFICATE-----"""


def upload_certificate(moto, _id):
    moto.client("iam").upload_server_certificate(ServerCertificateName="old-web", CertificateBody=CERT, PrivateKey="key")


def multi_region_logging(moto, _id):
    trail(moto, "org-trail", IsMultiRegionTrail=True)
    moto.client("cloudtrail").start_logging(Name="org-trail")


def s3_write_events(moto, _id):
    multi_region_logging(moto, _id)
    moto.client("cloudtrail").put_event_selectors(TrailName="org-trail", EventSelectors=[{
        "ReadWriteType": "WriteOnly", "IncludeManagementEvents": True,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}])


def account(_moto):
    return ACCOUNT, "global"


def enable_virtual_mfa(moto, user):
    iam = moto.client("iam")
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321")


def in_group_only(moto, user):
    iam = moto.client("iam")
    for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]:
        iam.detach_user_policy(UserName=user, PolicyArn=p["PolicyArn"])
    iam.create_group(GroupName="readers")
    iam.attach_group_policy(GroupName="readers", PolicyArn=p["PolicyArn"])
    iam.add_user_to_group(GroupName="readers", UserName=user)


def user_with_attached_policy(moto):
    name, region = iam_user(moto, "direct")
    iam = moto.client("iam")
    arn = iam.create_policy(PolicyName="read-s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    return name, region


def public_trail_bucket(moto):
    name, region = trail(moto)
    moto.client("s3").put_bucket_acl(Bucket=f"{name}-logs", ACL="public-read")
    return name, region


def attach_instance_profile(moto, instance_id):
    iam = moto.client("iam")
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.create_instance_profile(InstanceProfileName="app")
    iam.add_role_to_instance_profile(InstanceProfileName="app", RoleName="app")
    moto.client("ec2").associate_iam_instance_profile(IamInstanceProfile={"Name": "app"}, InstanceId=instance_id)


def unencrypted_fs(moto):
    return moto.client("efs").create_file_system(CreationToken="plain", Encrypted=False)["FileSystemId"], REGION


DETECTS = [
    Detect(2016, lambda m: (m.client("s3").create_bucket(Bucket="posture-no-mfa-delete") and "posture-no-mfa-delete", REGION), "NOT_PASS",
           note="moto does not implement MFA delete: only the failing side can be seen"),
    Detect(2025, account, "PASS", note="moto's root user never has access keys: only the passing side can be seen"),
    Detect(2026, account, "NOT_PASS", note="moto's root user never has MFA: only the failing side can be seen"),
    Detect(2027, account, "NOT_PASS", note="as 2026"),
    Detect(2028, account, "NOT_PASS", attach_role_policy("arn:aws:iam::aws:policy/AWSSupportAccess")),
    Detect(2029, account, "PASS", attach_admin_policy),
    Detect(2030, account, "PASS", upload_certificate),
    Detect(2078, account, "PASS", attach_role_policy("arn:aws:iam::aws:policy/AWSCloudShellFullAccess")),
    Detect(2057, account, "NOT_PASS", multi_region_logging),
    Detect(2058, account, "NOT_PASS", s3_write_events),
    Detect(2059, lambda m: (s3_write_events(m, None), account(m))[1], "NOT_PASS", note="write-only data events do not count for reads"),
    Detect(2071, lambda m: iam_user(m, "console-user", console=True), "NOT_PASS", enable_virtual_mfa),
    Detect(2074, lambda m: iam_user(m, "two-keys", keys=2), "NOT_PASS",
           lambda m, u: m.client("iam").update_access_key(UserName=u, AccessKeyId=m.client("iam").list_access_keys(UserName=u)["AccessKeyMetadata"][0]["AccessKeyId"], Status="Inactive")),
    Detect(2076, user_with_attached_policy, "NOT_PASS", in_group_only),
    Detect(2077, lambda m: ("posture", "global"), "NOT_PASS",
           lambda m, u: m.client("iam").put_user_policy(UserName=u, PolicyName="allow-all", PolicyDocument=json.dumps(
               {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::*"},
                                                       {"Effect": "Allow", "Action": ["ec2:*", "iam:*", "sts:*", "cloudtrail:*", "kms:*", "rds:*", "elasticfilesystem:*", "config:*", "s3:*"], "Resource": "*"}]}))),
    Detect(2056, public_trail_bucket, "NOT_PASS", lambda m, t: m.client("s3").put_bucket_acl(Bucket=f"{t}-logs", ACL="private")),
    Detect(2042, new_instance, "NOT_PASS", attach_instance_profile),
    Detect(2102, lambda m: stopped_recorder(m, all_supported=False), "NOT_PASS",
           lambda m, _id: m.client("config").put_configuration_recorder(ConfigurationRecorder={
               "name": "default", "roleARN": f"arn:aws:iam::{ACCOUNT}:role/config",
               "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True}})),
]


@pytest.mark.parametrize("item", DETECTS, ids=lambda i: str(i.check_id))
def test_every_detection_only_aws_item_sees_the_violation(aws_server, moto, item):
    client = sas(aws_server)
    instance_id, region = item.seed(moto)
    register(client, moto)
    check_all(client)
    assert result(client, item.check_id, instance_id, region)["Status"] == item.first, item.note
    if item.change:
        item.change(moto, instance_id)
        check_all(client)
        flipped = "PASS" if item.first == "NOT_PASS" else "NOT_PASS"
        assert result(client, item.check_id, instance_id, region)["Status"] == flipped
    detail = client.call("GetCheckDetail", {"CheckId": item.check_id, "Lang": "en"})
    assert detail["RepairSetting"]["RepairSupport"] is False, "a detection-only item offers no repair"


def test_encrypted_resources_pass_where_plain_ones_fail(aws_server, moto):
    client = sas(aws_server)
    plain_db, region = database(moto, "plain-db")
    secret_db, _ = database(moto, "secret-db", StorageEncrypted=True)
    plain_fs, _ = unencrypted_fs(moto)
    secret_fs = moto.client("efs").create_file_system(CreationToken="secret", Encrypted=True)["FileSystemId"]
    register(client, moto)
    check_all(client)
    assert [result(client, 2081, i, region)["Status"] for i in (plain_db, secret_db)] == ["NOT_PASS", "PASS"]
    assert [result(client, 2091, i, region)["Status"] for i in (plain_fs, secret_fs)] == ["NOT_PASS", "PASS"]


def test_discovery_finds_every_new_kind_and_evidence_names_the_cause(aws_server, moto):
    client = sas(aws_server)
    name, _ = trail(moto)
    key, _ = kms_key(moto)
    db, _ = database(moto)
    fs, _ = unencrypted_fs(moto)
    iam_user(moto, "someone")
    register(client, moto)
    check_all(client)
    acl, _ = default_nacl(moto)
    vpc = default_vpc(moto)
    expected = {2052: name, 2061: key, 2083: db, 2091: fs, 2075: "someone", 2111: vpc, 2121: acl, 2101: CONFIG}
    for check_id, instance_id in expected.items():
        rows = client.call("ListCheckInstanceResult", {"CheckId": check_id, "PageSize": 100})["BasicData"]
        assert instance_id in {r["InstanceId"] for r in rows}, (check_id, rows)
    # The evidence says which entry lets the world in.
    row = result(client, 2121, acl, REGION)
    assert row["Status"] == "NOT_PASS"
    shown = {c["Name"]: c["Value"] for c in row["InstanceInfo"]["Config"]}
    assert shown["OpenedBy"] == "#100 allow -1/all from 0.0.0.0/0", shown


# --- credential ages, on an in-process moto whose IAM backend the test ages ------------------


class AgedMoto:
    """moto in this process (no authentication), so the test can move dates in its IAM model."""

    def __init__(self):
        from moto.server import ThreadedMotoServer
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10)
        self.key = ("AKIAPOSTURETESTKEY00", "any-secret")

    def client(self, service, region=REGION):
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name=region,
                            aws_access_key_id=self.key[0], aws_secret_access_key=self.key[1])

    def age(self, user, days):
        """Moves the user, its login profile and its access keys `days` into the past."""
        from moto.iam.models import iam_backends
        u = iam_backends[ACCOUNT]["global"].users[user]
        u.create_date -= timedelta(days=days)  # moto's login profile is as old as its user
        for k in u.access_keys:
            k.create_date -= timedelta(days=days)


@pytest.fixture
def aged_moto():
    m = AgedMoto()
    yield m
    m.server.stop()


def test_old_and_idle_credentials_fail_and_idle_keys_are_deactivated_then_restored(tmp_path, aged_moto):
    m = aged_moto
    iam = m.client("iam")
    iam_user(m, "old-keys", console=True, keys=1)
    iam_user(m, "fresh", keys=1)
    m.age("old-keys", 100)
    server = Server(tmp_path / "data", demo=False, args=["--lease-ms", "1500"], env={"POSTURE_AWS_ENDPOINT_URL": m.url})
    try:
        client = sas(server)
        register(client, m)
        check_all(client)
        status = {(c, u): result(client, c, u, "global")["Status"] for c in (2072, 2073, 2075) for u in ("old-keys", "fresh")
                  if (c, u) != (2073, "fresh")}
        assert status == {(2072, "old-keys"): "NOT_PASS", (2072, "fresh"): "PASS", (2073, "old-keys"): "NOT_PASS",
                          (2075, "old-keys"): "NOT_PASS", (2075, "fresh"): "PASS"}, status

        repair = run_task(client, 2072, "REPAIR", "old-keys", "global")
        assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
        assert key_statuses(m, "old-keys") == ["Inactive"] and key_statuses(m, "fresh") == ["Active"]
        check_all(client)
        assert result(client, 2075, "old-keys", "global")["Status"] == "PASS", "no active key is old any more"
        rollback = run_task(client, 2072, "ROLLBACK", "old-keys", "global", repair_task=repair["TaskId"])
        assert rollback["Status"] == "ROLL_BACK_VERIFIED", rollback
        assert key_statuses(m, "old-keys") == ["Active"]
    finally:
        server.stop()
