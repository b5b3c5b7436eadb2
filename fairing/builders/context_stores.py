"""Context stores: how a build context reaches the in-cluster (Kaniko) builder.

``StreamContext`` needs no object store: the gzipped context is written to the Kaniko
container's stdin (``--context=tar://stdin``) through the API server's attach call.
``S3Context`` (boto3; S3-compatible endpoints such as MinIO included) and ``GCSContext``
(google-cloud-storage; ``STORAGE_EMULATOR_HOST`` honoured) upload it and point Kaniko
at ``s3://`` or ``gs://``. Credentials Kaniko needs for the store reach the pod from a
temporary Secret (``secretKeyRef``), never as plain env values. Every staged context
has a ``cleanup()`` that removes what was uploaded or created; the builder calls it
after success and failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from ..errors import BuildError, MissingDependencyError

__all__ = ["ContextStore", "StagedContext", "StreamContext", "S3Context", "GCSContext"]


@dataclass
class StagedContext:
    """Where Kaniko finds the context, and what the pod needs to reach it."""

    kaniko_context: str
    env: list = field(default_factory=list)       # container env entries (valueFrom for secrets)
    volumes: list = field(default_factory=list)
    volume_mounts: list = field(default_factory=list)
    stdin: Optional[Path] = None                  # stream this file to the container's stdin
    cleanup: Callable[[], None] = lambda: None


class ContextStore(Protocol):
    def stage(self, archive: Path, *, name: str, kube: Any) -> StagedContext:
        ...


class StreamContext:
    """No object store: the context goes to Kaniko's stdin."""

    def stage(self, archive: Path, *, name: str, kube: Any) -> StagedContext:
        return StagedContext("tar://stdin", stdin=archive)


def _secret(kube: Any, name: str, data: dict) -> Callable[[], None]:
    from ..kube.secrets import write_secret

    return write_secret(kube, name, data)


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            first()
        finally:
            second()

    return run


class S3Context:
    """Upload to ``s3://bucket/prefix...``. ``endpoint_url`` for S3-compatible stores (as seen
    from this machine); ``pod_endpoint_url`` if the pod reaches it at another address.
    ``pass_credentials`` (default True) gives Kaniko this session's keys through a
    temporary Secret; set it False where the pod has its own identity (IRSA)."""

    def __init__(self, bucket: str, *, prefix: str = "fairing-contexts/", endpoint_url: Optional[str] = None,
                 pod_endpoint_url: Optional[str] = None, region: Optional[str] = None, session: Any = None,
                 pass_credentials: bool = True) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.endpoint_url, self.pod_endpoint_url = endpoint_url, pod_endpoint_url or endpoint_url
        self.region = region
        self.session = session
        self.pass_credentials = pass_credentials

    def _session(self):
        if self.session is not None:
            return self.session
        try:
            import boto3
        except ImportError as exc:
            raise MissingDependencyError("boto3", "aws", "The S3 context store") from exc
        return boto3.session.Session(region_name=self.region)

    def stage(self, archive: Path, *, name: str, kube: Any) -> StagedContext:
        session = self._session()
        s3 = session.client("s3", endpoint_url=self.endpoint_url)
        key = f"{self.prefix}{name}.tar.gz"
        try:
            s3.upload_file(str(archive), self.bucket, key)
        except Exception as exc:
            raise BuildError(f"Could not upload the build context to s3://{self.bucket}/{key}: {exc}. Check the "
                             "bucket name, that it exists, and your AWS credentials.") from exc

        def remove() -> None:
            s3.delete_object(Bucket=self.bucket, Key=key)

        staged = StagedContext(f"s3://{self.bucket}/{key}", cleanup=remove)
        region = self.region or session.region_name or "us-east-1"
        staged.env += [{"name": "AWS_REGION", "value": region}]
        if self.pod_endpoint_url:
            staged.env += [{"name": "S3_ENDPOINT", "value": self.pod_endpoint_url},
                           {"name": "S3_FORCE_PATH_STYLE", "value": "true"}]
        if self.pass_credentials:
            creds = session.get_credentials()
            if creds is None:
                staged.cleanup()
                raise BuildError("No AWS credentials found for the S3 context store. Configure them (aws configure, "
                                 "env vars) or set pass_credentials=False when the pod has its own (IRSA).")
            frozen = creds.get_frozen_credentials()
            secret = f"{name}-s3"
            data = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
            if frozen.token:
                data["AWS_SESSION_TOKEN"] = frozen.token
            staged.cleanup = _both(_secret(kube, secret, data), remove)
            staged.env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}} for k in data]
        return staged


class GCSContext:
    """Upload to ``gs://bucket/prefix...`` with google-cloud-storage. ``credentials_file``: a
    service-account key given to Kaniko through a temporary Secret (omit with Workload
    Identity). ``pod_emulator_host``: where the pod reaches a storage emulator."""

    def __init__(self, bucket: str, *, prefix: str = "fairing-contexts/", client: Any = None,
                 credentials_file: Optional[str] = None, pod_emulator_host: Optional[str] = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.client = client
        self.credentials_file = credentials_file
        self.pod_emulator_host = pod_emulator_host

    def _client(self):
        if self.client is not None:
            return self.client
        try:
            from google.cloud import storage
        except ImportError as exc:
            raise MissingDependencyError("google-cloud-storage", "gcp", "The GCS context store") from exc
        return storage.Client()

    def stage(self, archive: Path, *, name: str, kube: Any) -> StagedContext:
        blob = self._client().bucket(self.bucket).blob(f"{self.prefix}{name}.tar.gz")
        try:
            blob.upload_from_filename(str(archive))
        except Exception as exc:
            raise BuildError(f"Could not upload the build context to gs://{self.bucket}/{blob.name}: {exc}. "
                             "Check the bucket and your Google Cloud credentials.") from exc
        staged = StagedContext(f"gs://{self.bucket}/{blob.name}", cleanup=blob.delete)
        if self.pod_emulator_host:
            staged.env.append({"name": "STORAGE_EMULATOR_HOST", "value": self.pod_emulator_host})
        if self.credentials_file:
            secret = f"{name}-gcs"
            staged.cleanup = _both(_secret(kube, secret, {"key.json": Path(self.credentials_file).read_text()}),
                                   blob.delete)
            staged.volumes.append({"name": "gcs-key", "secret": {"secretName": secret}})
            staged.volume_mounts.append({"name": "gcs-key", "mountPath": "/secret", "readOnly": True})
            staged.env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/secret/key.json"})
        return staged
