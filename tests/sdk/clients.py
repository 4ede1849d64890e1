"""The official clients, behind one small interface: `call(action, params)` with PascalCase
parameters (nested lists and dicts as the API documents them) returns the JSON body as a dict,
or raises ApiError(code, status, message). The requests are built and signed by the SDKs
themselves; only the adapters' plumbing is ours."""
import json

from alibabacloud_sas20181203 import models as sas_models
from alibabacloud_sas20181203.client import Client as SasClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException as TeaClientException
from alibabacloud_tea_openapi.exceptions import ServerException as TeaServerException
from alibabacloud_tea_util import models as util_models
from aliyunsdkcore.acs_exception.exceptions import ClientException as CoreClientException
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.http import protocol_type
from aliyunsdkcore.request import CommonRequest


class ApiError(Exception):
    def __init__(self, code, status, message):
        super().__init__(f"{code} ({status}): {message}")
        self.code, self.status, self.message = code, status, message


def snake(name: str) -> str:
    """The SDK's method name: an underscore before a capital that follows a lower-case letter
    (AddCloudVendorAccountAK → add_cloud_vendor_account_ak, …AKList → …aklist)."""
    return "".join("_" + c.lower() if c.isupper() and i and name[i - 1].islower() else c.lower() for i, c in enumerate(name))


class SasSdk:
    """alibabacloud-sas20181203 (tea-openapi): v3 by default, v1 with signature_algorithm='v2';
    over HTTPS trusting the CA file `ca` when given (the SDK's own `ca` option: a path; it adds
    to the default roots, and verification is on unless RuntimeOptions.ignore_ssl is set)."""

    def __init__(self, endpoint, key_id, secret, signature="v3", ca=None):
        cfg = open_api_models.Config(access_key_id=key_id, access_key_secret=secret, endpoint=endpoint,
                                     protocol="https" if ca else "http", ca=ca)
        if signature == "v1":
            cfg.signature_algorithm = "v2"
        self.client = SasClient(cfg)
        self.name = f"sas-sdk-{signature}"

    def call(self, action, params=None):
        method = getattr(self.client, snake(action))
        model = getattr(sas_models, f"{action}Request", None)
        try:
            if model is None:  # an operation without parameters has no request model
                return method().body.to_map()
            return method(model().from_map(params or {})).body.to_map()
        except (TeaClientException, TeaServerException) as e:
            raise ApiError(e.code, e.status_code, e.message) from e

    def call_unknown_action(self, action):
        """An action the SDK has no method for, through its generic call_api."""
        p = open_api_models.Params(
            action=action, version="2018-12-03", protocol="HTTP", pathname="/", method="POST",
            auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
        )
        try:
            return self.client.call_api(p, open_api_models.OpenApiRequest(query={}), util_models.RuntimeOptions())
        except (TeaClientException, TeaServerException) as e:
            raise ApiError(e.code, e.status_code, e.message) from e


def flatten(prefix, value, out):
    if isinstance(value, list):
        for i, v in enumerate(value, 1):
            flatten(f"{prefix}.{i}", v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}", v, out)
    elif value is not None:
        out[prefix] = str(value)


class CoreSdk:
    """aliyun-python-sdk-core (v1, HMAC-SHA1) with CommonRequest; over HTTPS trusting the CA
    file `ca` when given (AcsClient's `verify`). The protocol must be the SDK's own constant:
    it compares by identity, and any other "https" string silently sends plain HTTP."""

    def __init__(self, endpoint, key_id, secret, ca=None):
        self.client = AcsClient(key_id, secret, "cn-hangzhou", verify=ca)
        self.protocol = protocol_type.HTTPS if ca else protocol_type.HTTP
        self.endpoint = endpoint
        self.key_id = key_id
        self.name = "aliyun-python-sdk-core"

    def call(self, action, params=None):
        req = CommonRequest(domain=self.endpoint, version="2018-12-03", action_name=action)
        req.set_protocol_type(self.protocol)
        req.set_method("POST")
        flat = {}
        for k, v in (params or {}).items():
            flatten(k, v, flat)
        for k, v in flat.items():
            req.add_query_param(k, v)
        try:
            return json.loads(self.client.do_action_with_exception(req))
        except CoreServerException as e:
            raise ApiError(e.get_error_code(), e.get_http_status(), e.get_error_msg()) from e
        except CoreClientException as e:
            raise ApiError(e.get_error_code(), None, e.get_error_msg()) from e

    call_unknown_action = call
