//! The AWS SDK clients of one account and region, built once and reused, and the mapping of
//! SDK errors onto what the engine acts on (gone, transient, refused).

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use connectors::{CloudCredentials, ConnectorError};

/// SDK attempts per call. The SDK's standard retry strategy backs off exponentially with jitter
/// and retries throttling, 5xx answers and connection failures; what still fails after these
/// attempts is a transient error the engine retries under a later lease.
const ATTEMPTS: u32 = 4;

/// Where the SDK calls go and how.
#[derive(Clone)]
pub(crate) struct Settings {
    /// A fixed endpoint for every service (moto, LocalStack); None for AWS itself.
    pub endpoint_url: Option<String>,
    pub http: SharedHttpClient,
}

/// One account's clients in one region.
#[derive(Clone)]
pub(crate) struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub kms: aws_sdk_kms::Client,
    pub rds: aws_sdk_rds::Client,
    pub efs: aws_sdk_efs::Client,
    pub config: aws_sdk_config::Client,
}

/// `global` resources (IAM) are reached through us-east-1.
pub(crate) fn api_region(region: &str) -> &str {
    if region == "global" || region.is_empty() {
        "us-east-1"
    } else {
        region
    }
}

impl Clients {
    pub(crate) fn new(settings: &Settings, credentials: &CloudCredentials, region: &str) -> Clients {
        let creds = aws_credential_types::Credentials::new(
            credentials.secret_id.clone(),
            credentials.secret_key.clone(),
            None,
            None,
            "posture-cloud-account",
        );
        let region = aws_sdk_s3::config::Region::new(api_region(region).to_string());
        let retry =
            RetryConfig::standard().with_max_attempts(ATTEMPTS).with_initial_backoff(Duration::from_millis(200));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            // A whole call (every attempt) stays well inside the engine's default 30 s lease, so
            // a slow cloud does not let a second worker take over a step still under way.
            .operation_attempt_timeout(Duration::from_secs(8))
            .operation_timeout(Duration::from_secs(20))
            .build();
        // Each service's builder has the same shape; a macro keeps them in step.
        macro_rules! client {
            ($sdk:ident $(, $extra:ident($arg:expr))*) => {{
                let mut b = $sdk::config::Builder::new()
                    .behavior_version($sdk::config::BehaviorVersion::latest())
                    .region(region.clone())
                    .credentials_provider(creds.clone())
                    .http_client(settings.http.clone())
                    .retry_config(retry.clone())
                    .timeout_config(timeouts.clone())
                    $(.$extra($arg))*;
                if let Some(url) = &settings.endpoint_url {
                    b = b.endpoint_url(url.clone());
                }
                $sdk::Client::from_conf(b.build())
            }};
        }
        Clients {
            ec2: client!(aws_sdk_ec2),
            // A custom endpoint (moto, LocalStack) serves buckets by path, not by host name.
            s3: client!(aws_sdk_s3, force_path_style(settings.endpoint_url.is_some())),
            iam: client!(aws_sdk_iam),
            sts: client!(aws_sdk_sts),
            cloudtrail: client!(aws_sdk_cloudtrail),
            kms: client!(aws_sdk_kms),
            rds: client!(aws_sdk_rds),
            efs: client!(aws_sdk_efs),
            config: client!(aws_sdk_config),
        }
    }
}

/// What kind of failure an AWS call had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The resource does not exist (any more).
    Gone,
    /// The keys are wrong or lack a permission.
    Refused,
    /// The network, throttling or the service: worth retrying later.
    Transient,
    /// Anything else (invalid request, an operation the endpoint does not implement).
    Other,
}

/// An AWS call's error: its AWS error code (if the service answered one) and message.
#[derive(Clone, Debug)]
pub(crate) struct AwsError {
    pub failure: Failure,
    pub code: String,
    pub message: String,
}

const GONE: &[&str] = &[
    "InvalidGroup.NotFound",
    "InvalidGroupId.NotFound",
    "InvalidInstanceID.NotFound",
    "NoSuchBucket",
    "InvalidID",
    "TrailNotFoundException",
    "NotFoundException",
    "DBInstanceNotFound",
    "FileSystemNotFound",
    "InvalidVpcID.NotFound",
    "InvalidNetworkAclID.NotFound",
    "NoSuchEntity",
];
const REFUSED: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "InvalidAccessKeyId",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "ExpiredToken",
];
const TRANSIENT: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "SlowDown",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "Unavailable",
];

impl AwsError {
    pub(crate) fn other(message: impl Into<String>) -> AwsError {
        AwsError { failure: Failure::Other, code: String::new(), message: message.into() }
    }

    /// The resource is gone although the call succeeded (an empty or terminated answer).
    pub(crate) fn gone(code: &str, message: impl Into<String>) -> AwsError {
        AwsError { failure: Failure::Gone, code: code.to_string(), message: message.into() }
    }

    /// Classifies an SDK error.
    pub(crate) fn from_sdk<E>(e: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let text = DisplayErrorContext(&e).to_string();
        match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                AwsError { failure: Failure::Transient, code: String::new(), message: text }
            }
            SdkError::ServiceError(se) => {
                // An error body in another service's format (moto answers some STS errors in
                // EC2's) leaves the SDK without a code: read it from the body.
                let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                let code = se.err().code().map(str::to_string).or_else(|| xml_field(&body, "Code")).unwrap_or_default();
                let message =
                    se.err().message().map(str::to_string).or_else(|| xml_field(&body, "Message")).unwrap_or(text);
                let status = se.raw().status().as_u16();
                let failure = if GONE.contains(&code.as_str()) {
                    Failure::Gone
                } else if REFUSED.contains(&code.as_str()) || status == 403 {
                    Failure::Refused
                } else if TRANSIENT.contains(&code.as_str()) || status >= 500 {
                    Failure::Transient
                } else {
                    Failure::Other
                };
                AwsError { failure, code, message }
            }
            SdkError::ResponseError(re) => {
                // An answer the SDK could not parse: moto answers HTML with status 500 for an
                // operation it does not implement, which no retry will change.
                let status = re.raw().status().as_u16();
                AwsError { failure: Failure::Other, code: format!("HTTP{status}"), message: text }
            }
            _ => AwsError { failure: Failure::Other, code: String::new(), message: text },
        }
    }

    /// The AWS error code is `code`.
    pub(crate) fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// The error as the engine sees it; `stage` is the code of a permanent failure
    /// (`BackUpError`, `RepairError`, `RollbackError`, `FetchError`).
    pub(crate) fn during(&self, stage: &'static str) -> ConnectorError {
        let what =
            if self.code.is_empty() { self.message.clone() } else { format!("AWS {}: {}", self.code, self.message) };
        match self.failure {
            Failure::Gone => ConnectorError::freed(what),
            Failure::Refused => ConnectorError::new(
                "CloudAccessDenied",
                format!("{what} (check the cloud account's keys and their permissions)"),
            ),
            Failure::Transient => ConnectorError::transient("CloudUnavailable", what),
            Failure::Other => ConnectorError::new(stage, what),
        }
    }
}

/// A call's outcome where the error `code` means the change is already in place (a revoke of
/// a rule that is gone, a delete of what is not there): a call repeated after a crash is harmless.
pub(crate) fn done_unless<E>(res: Result<(), SdkError<E, HttpResponse>>, code: &str) -> Result<(), AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    done_if(res.map_err(AwsError::from), code)
}

/// [`done_unless`] of a call whose error is already classified.
pub(crate) fn done_if(res: Result<(), AwsError>, code: &str) -> Result<(), AwsError> {
    match res {
        Err(e) if e.is(code) => Ok(()),
        other => other,
    }
}

/// The text of the first `<field>…</field>` in an XML body.
pub(crate) fn xml_field(body: &str, field: &str) -> Option<String> {
    let start = body.find(&format!("<{field}>"))? + field.len() + 2;
    let len = body[start..].find(&format!("</{field}>"))?;
    Some(body[start..start + len].to_string())
}

/// The body of an answer with status 200 that the SDK could not parse (see `s3::read`).
pub(crate) fn ok_body<E>(e: &SdkError<E, HttpResponse>) -> Option<String> {
    let SdkError::ServiceError(se) = e else { return None };
    (se.raw().status().as_u16() == 200)
        .then(|| se.raw().body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()))?
}

/// `?` on an SDK call.
impl<E> From<SdkError<E, HttpResponse>> for AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn from(e: SdkError<E, HttpResponse>) -> Self {
        AwsError::from_sdk(e)
    }
}
