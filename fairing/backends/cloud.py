"""Cloud backends: the kubernetes backend with a cloud's registry, object store and identity.

``aws_backend``: ECR (``<account>.dkr.ecr.<region>.amazonaws.com``) with a login token
from boto3 (``ecr.get_authorization_token``), S3 for in-cluster build contexts, IRSA
for pods (a service account annotated with an IAM role). ``gke_backend``: Artifact
Registry (``<location>-docker.pkg.dev/<project>/<repository>``) with an OAuth2 access
token from google-auth, GCS for build contexts, Workload Identity for pods. The same
credentials feed the builder's push and the deployer's image pull secret.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

from ..errors import ConfigurationError, MissingDependencyError, RegistryAuthError
from .._options import checks_options, forwards_to, job_options
from .kubernetes import CLUSTER_JOB_OPTIONS
from . import Backend

__all__ = ["aws_backend", "gke_backend", "ecr_credentials", "gcp_credentials"]


def ecr_credentials(session: Any, *, endpoint_url: Optional[str] = None):
    """(registry host, StaticCredentials) for the account's ECR registry."""
    from ..images.auth import StaticCredentials

    ecr = session.client("ecr", endpoint_url=endpoint_url)
    try:
        data = ecr.get_authorization_token()["authorizationData"][0]
    except Exception as exc:
        raise RegistryAuthError(f"Could not get an ECR login token: {exc}. Check your AWS credentials and region "
                                "(aws sts get-caller-identity).") from exc
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = data["proxyEndpoint"].split("://", 1)[-1].rstrip("/")
    return host, StaticCredentials(user, password, host=host)


@job_options(*CLUSTER_JOB_OPTIONS)
@checks_options
@forwards_to("fairing.backends.kubernetes:kubernetes_backend")
def aws_backend(*, region: Optional[str] = None, base_image: Optional[str] = None, repository: str = "fairing",
                bucket: Optional[str] = None, service_account: Optional[str] = None, session: Any = None,
                endpoint_url: Optional[str] = None, **options: Any) -> Backend:
    """Build to ECR and run on EKS. ``bucket``: S3 bucket for Kaniko contexts (with a
    Dockerfile); ``service_account``: an IRSA-annotated account for the pods."""
    if session is None:
        try:
            import boto3
        except ImportError as exc:
            raise MissingDependencyError("boto3", "aws", "The aws backend") from exc
        session = boto3.session.Session(region_name=region)
    host, credentials = ecr_credentials(session, endpoint_url=endpoint_url)
    return _cloud_backend("aws", host, repository, credentials, base_image, service_account, options,
                          context_store=_s3_store(bucket, session) if bucket else None)


def _s3_store(bucket: str, session: Any):
    from ..builders.context_stores import S3Context

    return S3Context(bucket, session=session)


def gcp_credentials(credentials: Any = None, *, host: str):
    """StaticCredentials for Artifact Registry / GCR from google-auth (an OAuth2 access token)."""
    from ..images.auth import StaticCredentials

    if credentials is None:
        try:
            import google.auth
            import google.auth.transport.requests
        except ImportError as exc:
            raise MissingDependencyError("google-auth", "gcp", "The gke backend") from exc
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(google.auth.transport.requests.Request())
    token = getattr(credentials, "token", None)
    if not token:
        raise RegistryAuthError("The Google credentials have no access token. Run `gcloud auth application-default "
                                "login`, or use Workload Identity.")
    return StaticCredentials("oauth2accesstoken", token, host=host)


@job_options(*CLUSTER_JOB_OPTIONS)
@checks_options
@forwards_to("fairing.backends.kubernetes:kubernetes_backend")
def gke_backend(*, project: str, location: str = "us", repository: str = "fairing", base_image: Optional[str] = None,
                bucket: Optional[str] = None, service_account: Optional[str] = None, credentials: Any = None,
                **options: Any) -> Backend:
    """Build to Artifact Registry and run on GKE. ``bucket``: GCS bucket for Kaniko
    contexts; ``service_account``: a Kubernetes account bound with Workload Identity."""
    if not project:
        raise ConfigurationError("gke_backend needs project='your-gcp-project'.")
    host = f"{location}-docker.pkg.dev"
    creds = gcp_credentials(credentials, host=host)
    store = None
    if bucket:
        from ..builders.context_stores import GCSContext

        store = GCSContext(bucket)
    return _cloud_backend("gke", host, f"{project}/{repository}", creds, base_image, service_account, options,
                          context_store=store)


def _cloud_backend(name: str, host: str, repository: str, credentials: Any, base_image: Optional[str],
                   service_account: Optional[str], options: dict, *, context_store: Any) -> Backend:
    from ..deployers.mutators import service_account as use_account
    from .kubernetes import kubernetes_backend

    registry = f"{host}/{repository}"
    if service_account:
        options["mutators"] = [use_account(service_account), *options.get("mutators", [])]
    builder = options.pop("builder", None)
    if builder is None:
        from ..builders.append import AppendBuilder

        if options.get("dockerfile"):
            from ..builders.cluster import ClusterBuilder

            builder = ClusterBuilder(base_image, registry, dockerfile=options.pop("dockerfile"),
                                     credentials=credentials, context_store=context_store,
                                     # the build pod runs where the job will
                                     **{k: options.get(k) for k in ("namespace", "kubeconfig", "context")})
        else:
            if not base_image:
                raise ConfigurationError(f"The {name} backend needs base_image=... (an image in a registry the "
                                         "cluster can pull from).")
            builder = AppendBuilder(base_image, registry, credentials=credentials)
    backend = kubernetes_backend(builder=builder, pull_credentials=credentials, **options)
    return Backend(name, backend.builder, backend.deployer, backend.serving)
