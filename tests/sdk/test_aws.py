"""AWS through a real moto_server: resources are seeded with boto3 (the AWS SDK for Python),
the account is registered with AddCloudVendorAccountAK, and every AWS check item is driven
REPAIR → REPAIR_SUCCESS_VERIFIED → ROLLBACK → ROLL_BACK_VERIFIED. Each step is judged by
reading the resource back through the AWS API, never through posture's own view.

moto runs with authentication on: posture's calls are signed with a real moto IAM key, and a
wrong key is refused as AWS would refuse it."""
import time
from dataclasses import dataclass, field
from typing import Callable

import pytest
from botocore.exceptions import ClientError

from clients import CoreSdk, SasSdk
from conftest import Moto, Server
from test_conformance import expect_error, wait_for_task

ACCOUNT = "123456789012"  # moto's account id
REGION = "us-east-1"
WORLD_RULES = ("0.0.0.0/0", "::/0")


def sas(server, signature="v3"):
    c = server.credentials
    return SasSdk(server.endpoint, c["AccessKeyId"], c["AccessKeySecret"], signature=signature)


def register(client, moto, secret=None):
    key_id, real_secret = moto.key
    return client.call("AddCloudVendorAccountAK", {
        "Vendor": "AWS", "AkType": "primary", "SecretId": key_id, "SecretKey": secret or real_secret,
        "Regions": [REGION], "AuthModules": ["CSPM"], "VendorAuthAlias": "moto",
    })["Data"]


def check_all(client, timeout=60):
    task_id = client.call("SubmitCheck", {})["TaskId"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if client.call("GetCheckProcess", {"TaskId": task_id})["StatusCode"] in ("2", "4"):
            return
        time.sleep(0.1)
    raise AssertionError("the check run did not finish")


def result(client, check_id, instance_id, region):
    rows = client.call("ListCheckInstanceResult", {"CheckId": check_id, "InstanceIds": [instance_id], "PageSize": 100})["BasicData"]
    (row,) = [r for r in rows if r["RegionId"] == region]
    return row


def run_task(client, check_id, kind, instance_id, region, params=(), repair_task=None, timeout=60):
    target = {"InstanceId": instance_id, "RegionId": region}
    req = {"CheckId": check_id, "Type": kind, "DimensionType": "INSTANCE", "OperationTaskInstances": [target]}
    if params:
        req["RepairTempParam"] = [{"Name": n, "Value": v} for n, v in params]
    if repair_task:
        target["TaskId"] = repair_task
    root = client.call("SubmitOperationTask", req)["RootTaskId"]
    return wait_for_task(client, check_id, root, timeout=timeout)


# --- reading the real state through boto3 -------------------------------------------------


def sg_rules(moto, group_id):
    (g,) = moto.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    rules = set()
    for p in g["IpPermissions"]:
        head = (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"))
        rules |= {(*head, r["CidrIp"], r.get("Description")) for r in p.get("IpRanges", [])}
        rules |= {(*head, r["CidrIpv6"], r.get("Description")) for r in p.get("Ipv6Ranges", [])}
        rules |= {(*head, r["GroupId"], r.get("Description")) for r in p.get("UserIdGroupPairs", [])}
    return rules


def world_rules(rules, covers):
    return {r for r in rules if r[3] in WORLD_RULES and covers(r)}


def covers(port):
    return lambda r: r[0] == "-1" or (r[0] == "tcp" and r[1] <= port <= r[2])


def new_group(moto, name, *perms):
    ec2 = moto.client("ec2")
    gid = ec2.create_security_group(GroupName=name, Description=name)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=list(perms))
    return gid, REGION


def tcp(port, cidrs=(), cidrs6=(), desc=None, to=None):
    p = {"IpProtocol": "tcp", "FromPort": port, "ToPort": to or port}
    if cidrs:
        p["IpRanges"] = [{"CidrIp": c, **({"Description": desc} if desc else {})} for c in cidrs]
    if cidrs6:
        p["Ipv6Ranges"] = [{"CidrIpv6": c} for c in cidrs6]
    return p


def absent_on(code, fn):
    try:
        return fn()
    except ClientError as e:
        if e.response["Error"]["Code"] == code:
            return None
        raise


def bucket(moto, name, acl=None):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=name)
    if acl:
        s3.put_bucket_acl(Bucket=name, ACL=acl)
    return name, REGION


def pab(moto, b):
    return absent_on("NoSuchPublicAccessBlockConfiguration",
                     lambda: moto.client("s3").get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"])


def acl(moto, b):
    a = moto.client("s3").get_bucket_acl(Bucket=b)
    return a["Owner"]["ID"], sorted((g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"]) for g in a["Grants"])


def encryption(moto, b):
    return absent_on("ServerSideEncryptionConfigurationNotFoundError",
                     lambda: moto.client("s3").get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"])


def versioning(moto, b):
    return moto.client("s3").get_bucket_versioning(Bucket=b).get("Status")


def password_policy(moto, _id=None):
    return absent_on("NoSuchEntity", lambda: moto.client("iam").get_account_password_policy()["PasswordPolicy"])


def set_policy(moto, **fields):
    if fields:
        moto.client("iam").update_account_password_policy(**fields)
    return ACCOUNT, "global"


def ebs_default(moto, _id=None):
    return moto.client("ec2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"]


def new_instance(moto):
    ec2 = moto.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    (i,) = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             MetadataOptions={"HttpTokens": "optional", "HttpEndpoint": "enabled"},
                             TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "legacy-imds"}]}])["Instances"]
    return i["InstanceId"], REGION


def metadata(moto, instance_id):
    (r,) = moto.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    m = r["Instances"][0]["MetadataOptions"]
    return {k: m.get(k) for k in ("HttpTokens", "HttpEndpoint", "HttpPutResponseHopLimit")}


def default_group(moto):
    ec2 = moto.client("ec2")
    (g,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    ec2.authorize_security_group_ingress(GroupId=g["GroupId"], IpPermissions=[
        tcp(80, ["0.0.0.0/0"], desc="web"),
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": g["GroupId"]}]},
    ])
    return g["GroupId"], REGION


@dataclass
class Item:
    check_id: int
    seed: Callable            # moto -> (instance id, region)
    read: Callable            # (moto, instance id) -> the real state
    fixed: Callable           # state -> whether the repair did its job
    params: tuple = ()
    rollback: bool = True
    note: str = field(default="")


ITEMS = [
    Item(2001, lambda m: new_group(m, "ssh-open", tcp(22, ["0.0.0.0/0", "10.1.0.0/16"], desc="ssh"), tcp(443, ["0.0.0.0/0"])),
         sg_rules, lambda s: not world_rules(s, covers(22)) and ("tcp", 22, 22, "203.0.113.0/24", "ssh") in s
         and ("tcp", 443, 443, "0.0.0.0/0", None) in s and ("tcp", 22, 22, "10.1.0.0/16", "ssh") in s,
         params=(("AllowedCidr", "203.0.113.0/24"),)),
    Item(2002, lambda m: new_group(m, "rdp-open", tcp(3389, ["0.0.0.0/0"], ["::/0"])),
         sg_rules, lambda s: not world_rules(s, covers(3389)) and ("tcp", 3389, 3389, "198.51.100.0/24", None) in s,
         params=(("AllowedCidr", "198.51.100.0/24"),)),
    Item(2003, lambda m: new_group(m, "all-open", {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
         sg_rules, lambda s: not world_rules(s, lambda r: True) and any(r[3] == "10.0.0.0/8" for r in s),
         params=(("AllowedCidr", "10.0.0.0/8"),)),
    Item(2004, default_group, sg_rules, lambda s: s == set()),
    Item(2011, lambda m: bucket(m, "posture-no-pab"), pab, lambda s: s is not None and all(s.values())),
    Item(2012, lambda m: bucket(m, "posture-public-acl", acl="public-read"), acl,
         lambda s: not any("AllUsers" in (g or "") for g, _ in s[1])),
    Item(2013, lambda m: bucket(m, "posture-plain"), encryption,
         lambda s: s is not None and s[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"),
    Item(2014, lambda m: bucket(m, "posture-unversioned"), versioning, lambda s: s == "Enabled", rollback=False),
    Item(2021, lambda m: set_policy(m), password_policy,
         lambda s: s is not None and s["MinimumPasswordLength"] == 16 and s["AllowUsersToChangePassword"] is False,
         params=(("MinimumPasswordLength", "16"), ("AllowUsersToChangePassword", "false"))),
    Item(2022, lambda m: set_policy(m, MinimumPasswordLength=10, MaxPasswordAge=30), password_policy,
         lambda s: all(s.get(k) for k in ("RequireSymbols", "RequireNumbers", "RequireUppercaseCharacters", "RequireLowercaseCharacters"))
         and s["MinimumPasswordLength"] == 10 and s["MaxPasswordAge"] == 30),
    Item(2023, lambda m: set_policy(m), password_policy, lambda s: s is not None and s.get("MaxPasswordAge") == 60,
         params=(("MaxPasswordAge", "60"),)),
    Item(2024, lambda m: set_policy(m, RequireSymbols=True, PasswordReusePrevention=5), password_policy,
         lambda s: s["PasswordReusePrevention"] == 24 and s["RequireSymbols"] is True),
    Item(2031, lambda m: (ACCOUNT, REGION), ebs_default, lambda s: s is True),
    Item(2041, new_instance, metadata, lambda s: s["HttpTokens"] == "required"),
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: str(i.check_id))
def test_every_aws_item_repairs_and_rolls_back_for_real(aws_server, moto, item):
    repair_then_roll_back(aws_server, moto, item)


def repair_then_roll_back(aws_server, moto, item):
    """Seed → NOT_PASS → REPAIR verified, the state fixed → ROLLBACK verified, the state exactly
    the original (or, for a repair-only item, the rollback refused)."""
    client = sas(aws_server)
    instance_id, region = item.seed(moto)
    original = item.read(moto, instance_id)
    assert not item.fixed(original), "the seed is a violation"
    register(client, moto)
    check_all(client)
    assert result(client, item.check_id, instance_id, region)["Status"] == "NOT_PASS"

    repair = run_task(client, item.check_id, "REPAIR", instance_id, region, item.params)
    assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
    repaired = item.read(moto, instance_id)
    assert item.fixed(repaired), repaired
    assert result(client, item.check_id, instance_id, region)["Status"] == "PASS"

    if not item.rollback:
        expect_error(lambda: run_task(client, item.check_id, "ROLLBACK", instance_id, region, repair_task=repair["TaskId"]),
                     "RollbackNotSupported", 400)
        return
    rollback = run_task(client, item.check_id, "ROLLBACK", instance_id, region, repair_task=repair["TaskId"])
    assert rollback["Status"] == "ROLL_BACK_VERIFIED", rollback
    assert item.read(moto, instance_id) == original, "the rollback restores exactly what was there"
    assert result(client, item.check_id, instance_id, region)["Status"] == "NOT_PASS"


@pytest.mark.parametrize("kind", ["sas-sdk-v3", "sas-sdk-v1", "aliyun-python-sdk-core"])
def test_sdk_conformance_security_group_with_the_allowed_cidr_parameter(aws_server, moto, kind):
    c = aws_server.credentials
    client = (CoreSdk(aws_server.endpoint, c["AccessKeyId"], c["AccessKeySecret"]) if kind == "aliyun-python-sdk-core"
              else sas(aws_server, kind.rsplit("-", 1)[1]))
    group, region = new_group(moto, "sdk-" + kind, tcp(22, ["0.0.0.0/0"], ["::/0"]))
    original = sg_rules(moto, group)
    account = register(client, moto)
    assert account["Vendor"] == "AWS" and account["ServiceStatus"] == 0 and "SecretKey" not in account
    regions = client.call("ListCloudVendorRegions", {"Vendor": "AWS"})["Data"]
    assert {"RegionId": REGION, "Area": "us", "Selected": 1, "Disable": 0} in regions
    check_all(client)

    detail = client.call("GetCheckDetail", {"CheckId": 2001, "Lang": "en"})
    (param,) = detail["RepairSetting"]["RepairConfigs"]
    assert (param["Name"], param["UsageType"], param["EmptyParamSwitch"], param["TypeDefine"]) == ("AllowedCidr", "3", "1", '{"type":"CIDR"}')
    assert result(client, 2001, group, region)["Status"] == "NOT_PASS"
    aws_items = client.call("ListCheckResult", {"Vendors": ["AWS"], "Statuses": ["NOT_PASS"], "PageSize": 100})["Checks"]
    assert 2001 in {c["CheckId"] for c in aws_items} and all(c["CheckId"] >= 2000 for c in aws_items)

    submit = {"CheckId": 2001, "Type": "REPAIR", "DimensionType": "INSTANCE", "OperationTaskInstances": [{"InstanceId": group, "RegionId": region}]}
    expect_error(lambda: client.call("SubmitOperationTask", submit), "RepairedParamNotCustomized.AllowedCidr", 400)
    # Malformed, and well-formed values that would leave the group open (the world, half of
    # it, IPv6's world, host bits set: refused rather than widened).
    for bad in ("10.0.0.0/33", "10.0.0.0", "0.0.0.0/0 ", "10.0.0.0/8\n", "0.0.0.0/0", "0.0.0.0/1", "::/0", "10.0.0.1/8"):
        expect_error(lambda: client.call("SubmitOperationTask", {**submit, "RepairTempParam": [{"Name": "AllowedCidr", "Value": bad}]}),
                     "ErrorParamFormat.AllowedCidr", 400)
    assert sg_rules(moto, group) == original, "refused submissions change nothing"

    repair = run_task(client, 2001, "REPAIR", group, region, (("AllowedCidr", "192.0.2.0/24"),))
    assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
    assert sg_rules(moto, group) == {("tcp", 22, 22, "192.0.2.0/24", None)}, "both world rules became one"
    rollback = run_task(client, 2001, "ROLLBACK", group, region, repair_task=repair["TaskId"])
    assert rollback["Status"] == "ROLL_BACK_VERIFIED", rollback
    assert sg_rules(moto, group) == original


def test_wrong_keys_are_refused_at_registration_and_secrets_never_come_back(aws_server, moto):
    client = sas(aws_server)
    key_id, secret = moto.key
    e = expect_error(lambda: register(client, moto, secret="not-the-secret"), "CloudAccessKeyInvalid", 400)
    assert "SignatureDoesNotMatch" in e.message, e.message
    expect_error(lambda: client.call("AddCloudVendorAccountAK", {
        "Vendor": "AWS", "AkType": "primary", "SecretId": "AKIAUNKNOWNKEY000000", "SecretKey": secret, "Regions": [REGION]}),
        "CloudAccessKeyInvalid", 400)
    expect_error(lambda: client.call("AddCloudVendorAccountAK", {"Vendor": "Tencent", "AkType": "primary", "SecretId": "a", "SecretKey": "b"}),
                 "CloudVendorNotSupported", 400)
    expect_error(lambda: client.call("AddCloudVendorAccountAK", {"Vendor": "AWS", "AkType": "primary", "SecretId": key_id, "SecretKey": secret}),
                 "MissingParameter", 400)
    expect_error(lambda: client.call("AddCloudVendorAccountAK", {
        "Vendor": "AWS", "AkType": "primary", "SecretId": key_id, "SecretKey": secret, "Regions": ["mars-north-1"]}),
        "InvalidParameter", 400)
    # A request signed with the wrong posture secret: the mismatch answer does not echo the
    # cloud secret it carries (its string to sign would).
    c = aws_server.credentials
    for bad_signer in (SasSdk(aws_server.endpoint, c["AccessKeyId"], "wrong"), SasSdk(aws_server.endpoint, c["AccessKeyId"], "wrong", signature="v1")):
        e = expect_error(lambda: register(bad_signer, moto), "SignatureDoesNotMatch", 400)
        assert secret not in e.message and "not shown" in e.message, e.message
    assert client.call("DescribeCloudVendorAccountAKList", {})["PageInfo"]["TotalCount"] == 0, "nothing refused is stored"

    added = register(client, moto)
    expect_error(lambda: register(client, moto), "CloudAccountExists", 400)
    listed = client.call("DescribeCloudVendorAccountAKList", {"Vendor": "AWS"})
    assert [a["AuthId"] for a in listed["CloudVendorAccountAKs"]] == [added["AuthId"]]
    assert listed["CloudVendorAccountAKs"][0]["VendorUid"] == ACCOUNT
    assert secret not in str(listed) and secret not in str(added)
    # Replacing the keys is verified too; a wrong secret leaves the stored ones in place.
    expect_error(lambda: client.call("ModifyCloudVendorAccountAK", {"AuthIds": str(added["AuthId"]), "SecretId": key_id, "SecretKey": "wrong"}),
                 "CloudAccessKeyInvalid", 400)
    modified = client.call("ModifyCloudVendorAccountAK", {"AuthIds": str(added["AuthId"]), "VendorAuthAlias": "renamed", "Status": 1})["Data"]
    assert (modified["VendorAuthAlias"], modified["Status"]) == ("renamed", 1)
    for f in aws_server.data.iterdir():
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"the secret is not stored in clear ({f.name})"
    assert secret not in (aws_server.data.parent / "serve.log").read_text()
    # The audit trail has every attempt, done or refused, with the secret redacted.
    core = CoreSdk(aws_server.endpoint, c["AccessKeyId"], c["AccessKeySecret"])
    trail = core.call("DescribeAuditLog", {"ActionName": "AddCloudVendorAccountAK", "PageSize": 100})["Records"]
    assert [r["Outcome"] for r in trail].count("OK") == 1 and len(trail) == 7, trail
    assert all(r["Parameters"]["SecretKey"] == "(redacted)" for r in trail), trail
    assert secret not in str(trail) and secret not in str(core.call("DescribeAuditLog", {"PageSize": 100}))
    client.call("DeleteCloudVendorAccountAK", {"AuthId": added["AuthId"]})
    expect_error(lambda: client.call("DeleteCloudVendorAccountAK", {"AuthId": added["AuthId"]}), "CloudAccountNotFound", 404)


def test_a_resource_deleted_between_check_and_repair_fails_cleanly(aws_server, moto):
    client = sas(aws_server)
    group, region = new_group(moto, "short-lived", tcp(22, ["0.0.0.0/0"]))
    register(client, moto)
    check_all(client)
    assert result(client, 2001, group, region)["Status"] == "NOT_PASS"
    moto.client("ec2").delete_security_group(GroupId=group)
    task = run_task(client, 2001, "REPAIR", group, region, (("AllowedCidr", "10.0.0.0/8"),))
    assert task["Status"] == "BACKUP_FAIL", task
    assert task["InstanceFreed"] is True and task["ErrorCode"] == "InstanceFreed", task


def test_moto_stopped_during_a_task_is_retried_then_fails_cleanly(tmp_path):
    moto = Moto(tmp_path)
    try:
        moto.reset()
        # The endpoint from the configuration file this time (the data directory's posture.toml),
        # and a lease long enough for one attempt's SDK retries (about 2 s against a closed port).
        data = tmp_path / "data"
        data.mkdir()
        (data / "posture.toml").write_text(f'[connectors.aws]\nendpoint_url = "{moto.url}"\n')
        server = Server(data, demo=False, args=["--lease-ms", "4000"], env={"POSTURE_AWS_ENDPOINT_URL": ""})
        try:
            client = sas(server)
            group, region = new_group(moto, "unreachable", tcp(22, ["0.0.0.0/0"]))
            register(client, moto)
            check_all(client)
            moto.stop()
            task = run_task(client, 2001, "REPAIR", group, region, (("AllowedCidr", "10.0.0.0/8"),), timeout=120)
            # Each lease retried the backup; after the last one the task failed, before any change.
            assert task["Status"] == "BACKUP_FAIL", task
            assert task["ErrorCode"] == "CloudUnavailable" and task["InstanceFreed"] is False, task
            # Registering keys while AWS cannot be reached is refused as unavailable, not as bad keys.
            key_id, secret = moto.key
            expect_error(lambda: client.call("AddCloudVendorAccountAK", {
                "Vendor": "AWS", "AkType": "sub", "SecretId": "AKIASECONDKEY0000000", "SecretKey": secret, "Regions": [REGION]}),
                "CloudServiceUnavailable", 503)
            log = (tmp_path / "serve.log").read_text()
            assert log.count("transient failure; the step is retried") >= 3, log[-3000:]
        finally:
            server.stop()
    finally:
        moto.stop()
        moto.log.close()


def test_a_registered_account_is_discovered_and_checked_without_a_submit_check(aws_server, moto):
    client = sas(aws_server)
    group, region = new_group(moto, "discovered", tcp(22, ["0.0.0.0/0"]))
    register(client, moto)
    deadline = time.time() + 60
    while True:
        procs = client.call("ListOperationProcess", {"PageSize": 100})["Processes"]
        runs = [p for p in procs if p["TaskSource"] == "CLOUD_ACCOUNT"]
        if runs and runs[0]["StatusCode"] == 2:
            break
        assert time.time() < deadline, procs
        time.sleep(0.1)
    assert len(runs) == 1 and runs[0]["TaskType"] == "CHECK_POLICY"
    assert result(client, 2001, group, region)["Status"] == "NOT_PASS"


# --- PreviewOperationTask on cloud resources ---------------------------------------------------


def ingress_aspect(moto, group_id):
    """A group's inbound rules in the form the preview shows them (the connector's `ingress`)."""
    (g,) = moto.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    rules = []
    for p in g["IpPermissions"]:
        all_ports = p["IpProtocol"] == "-1"
        head = {"proto": p["IpProtocol"], "from": None if all_ports else p.get("FromPort"),
                "to": None if all_ports else p.get("ToPort")}
        rules += [{**head, "source": f"cidr4:{r['CidrIp']}", "description": r.get("Description")} for r in p.get("IpRanges", [])]
        rules += [{**head, "source": f"cidr6:{r['CidrIpv6']}", "description": r.get("Description")} for r in p.get("Ipv6Ranges", [])]
    return sorted(rules, key=lambda r: (r["proto"], r["from"], r["to"], r["source"], r["description"] or ""))


def policy_aspect(moto):
    p = password_policy(moto)
    keys = ("MinimumPasswordLength", "MaxPasswordAge", "PasswordReusePrevention", "RequireSymbols", "RequireNumbers",
            "RequireUppercaseCharacters", "RequireLowercaseCharacters", "AllowUsersToChangePassword", "HardExpiry")
    return None if p is None else {k: p.get(k) for k in keys}


def test_a_cloud_preview_shows_each_aspect_before_and_as_the_repair_leaves_it(aws_server, moto):
    """The preview's Before is the resource as boto3 reads it now; its After is the resource as
    boto3 reads it once the repair is verified; and nothing changes in between."""
    c = aws_server.credentials
    client = CoreSdk(aws_server.endpoint, c["AccessKeyId"], c["AccessKeySecret"])
    group, _ = new_group(moto, "preview-ssh", tcp(22, ["0.0.0.0/0", "10.1.0.0/16"], desc="ssh"), tcp(443, ["0.0.0.0/0"]))
    bucket_name, _ = bucket(moto, "posture-preview")
    set_policy(moto, MinimumPasswordLength=8, RequireSymbols=True)
    register(client, moto)
    check_all(client)
    cases = [
        (2001, group, REGION, "ingress", lambda: ingress_aspect(moto, group), (("AllowedCidr", "192.0.2.0/24"),)),
        (2011, bucket_name, REGION, "public_access_block", lambda: pab(moto, bucket_name), ()),
        (2021, ACCOUNT, "global", "password_policy", lambda: policy_aspect(moto), ()),
    ]
    for check_id, instance_id, region, aspect, read, params in cases:
        before = read()
        req = {"CheckId": check_id, "Type": "REPAIR", "OperationTaskInstances": [{"InstanceId": instance_id, "RegionId": region}]}
        if params:
            req["RepairTempParam"] = [{"Name": n, "Value": v} for n, v in params]
        (row,) = client.call("PreviewOperationTask", req)["Instances"]
        assert row["Outcome"] == "CHANGE", row
        (change,) = row["Changes"]
        assert (change["Kind"], change["Aspect"]) == ("CLOUD_STATE", aspect), change
        assert change["Before"] == before, (check_id, change["Before"], before)
        assert read() == before, "a preview changes nothing"
        repair = run_task(client, check_id, "REPAIR", instance_id, region, params)
        assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
        assert change["After"] == read(), (check_id, change["After"], read())
        (again,) = client.call("PreviewOperationTask", req)["Instances"]
        assert again["Outcome"] == "NO_CHANGE", again
