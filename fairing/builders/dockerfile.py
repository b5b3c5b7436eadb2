"""A Dockerfile and its build context, generated from a BuildContext.

Shared by every builder that runs a Dockerfile (the Docker builder here, the in-cluster
Kaniko builder later). The generated Dockerfile installs the requirements, then sets env, labels
and entrypoint, and copies the code last, so a code change reuses every cached step
but the last one (one layer to build and push)::

    FROM <base>
    WORKDIR /app
    COPY requirements.txt /tmp/fairing-requirements.txt      # only with requirements
    RUN PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install ... -r /tmp/fairing-requirements.txt
    ENV KEY="value" ...
    LABEL ...
    ENTRYPOINT ["python3", "-m", "fairing_runtime"]
    COPY code/ /app/

:func:`docker_build_context` returns the files to send (``Dockerfile``,
``requirements.txt``, the code under ``code/``) as a :class:`BuildContext`, so its tar
is reproducible: the same inputs send the same bytes and hit the same build cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Optional

from ..context import CONSTRAINTS_FILE, BuildContext
from ..errors import ConfigurationError

__all__ = ["render_dockerfile", "docker_build_context", "pip_config", "DEFAULT_PIP_ARGS", "CODE_DIR"]

#: Where the code sits in the Docker build context.
CODE_DIR = "code"
#: The requirements file's path in the Docker build context.
REQUIREMENTS_FILE = "requirements.txt"
#: Where the requirements file is copied in the image (removed after the install).
_IMAGE_REQUIREMENTS = "/tmp/fairing-requirements.txt"
#: pip options for the requirements layer: no cache in the image, no prompts.
DEFAULT_PIP_ARGS: tuple[str, ...] = ("--no-cache-dir", "--disable-pip-version-check", "--no-input")


def _env_value(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ConfigurationError(
            f"The env value of {key!r} contains a line break, which a Dockerfile ENV cannot hold. "
            "Pass it at run time instead (DockerDeployer(env={...})), or encode it (e.g. base64)."
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'{key}="{escaped}"'


def render_dockerfile(
    context: BuildContext,
    base_image: str,
    *,
    python: str = "python3",
    pip_args: Sequence[str] = DEFAULT_PIP_ARGS,
    labels: Optional[dict] = None,
    pip_config_file: Optional[str] = None,
) -> str:
    """The Dockerfile text that builds ``context`` on ``base_image``.

    ``pip_config_file``: where the build mounts a pip configuration holding the
    indexes with credentials (:func:`pip_config`; the Kaniko builder mounts it from a
    Secret); without it such indexes are refused, since they would enter the image.

    ``python`` runs pip in the image [``python3``]; ``pip_args`` are added to
    ``pip install`` [:data:`DEFAULT_PIP_ARGS`]; ``labels`` become ``LABEL`` lines.
    ``PIP_BREAK_SYSTEM_PACKAGES=1`` is set for the install only, so that pip installs
    into the system Python of Debian-based images (older pips ignore it).
    """
    if not base_image or any(c.isspace() for c in base_image):
        raise ConfigurationError(f"base_image must be an image name like 'python:3.11-slim', got {base_image!r}.")
    lines = [f"FROM {base_image}", f"WORKDIR {context.workdir}"]
    if context.requirements:
        if context.pip_indexes.has_credentials and pip_config_file is None:
            raise ConfigurationError(
                f"The requirements use an index with credentials ({', '.join(context.pip_indexes.redacted())}). "
                "A Dockerfile build would write them into the image or its history. Use the append builder "
                "(builder='append'), which gives them to pip through its environment, or an index without credentials."
            )
        pip = " ".join(json.dumps(a) if any(c.isspace() for c in a) else a for a in pip_args)
        config = f"PIP_CONFIG_FILE={pip_config_file} " if context.pip_indexes.has_credentials else ""
        if context.constraints:  # named by the requirements file, beside it
            lines.append(f"COPY {CONSTRAINTS_FILE} /tmp/{CONSTRAINTS_FILE}")
        lines += [
            f"COPY {REQUIREMENTS_FILE} {_IMAGE_REQUIREMENTS}",
            f"RUN {config}PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore {python} -m pip install {pip} -r {_IMAGE_REQUIREMENTS}"
            f" && rm -f {_IMAGE_REQUIREMENTS}",
        ]
    # Settings before the code: they rarely change, so a code change rebuilds one step only.
    if context.env:
        lines.append("ENV " + " \\\n    ".join(_env_value(k, v) for k, v in context.env.items()))
    if labels:
        lines.append("LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(str(v))}" for k, v in sorted(labels.items())))
    lines.append("ENTRYPOINT " + json.dumps(list(context.entrypoint)))  # also clears the base image's CMD
    if context.files:
        target = context.workdir.rstrip("/") + "/"
        lines.append(f"COPY {CODE_DIR}/ {target}")
    return "\n".join(lines) + "\n"


def pip_config(context: BuildContext) -> bytes:
    """A pip configuration file with ``context``'s indexes (credentials included: for a Secret only)."""
    env = context.pip_indexes.env()
    lines = ["[global]"]
    if "PIP_INDEX_URL" in env:
        lines.append(f"index-url = {env['PIP_INDEX_URL']}")
    if "PIP_EXTRA_INDEX_URL" in env:
        lines.append(f"extra-index-url = {env['PIP_EXTRA_INDEX_URL']}")
    return ("\n".join(lines) + "\n").encode()


def docker_build_context(context: BuildContext, dockerfile: str) -> BuildContext:
    """The files a Dockerfile build of ``context`` needs: ``Dockerfile``, ``requirements.txt``
    and the code under ``code/``, as a BuildContext (so its tar is reproducible)."""
    files: dict = {f"{CODE_DIR}/{path}": source for path, source in context.files.items()}
    files["Dockerfile"] = dockerfile.encode()
    if context.requirements:
        files[REQUIREMENTS_FILE] = context.requirements_txt()
        if context.constraints:
            files[CONSTRAINTS_FILE] = context.constraints_txt()
    return BuildContext(files=files, entrypoint=context.entrypoint, workdir="/")
