"""What gets packaged, on real files and links: layout, symlinks, collisions, credentials,
requirements parsing, the signed result channel. (Jobs that use them: tests/local/test_packaging.py.)"""

from __future__ import annotations

import io
import os
import tarfile
import uuid

import pytest

from fairing import (ConfigurationError, EntryPointNotFoundError, OutsideProjectError, PathCollisionError,
                     SecretInContextError)
from fairing.builders.dockerfile import render_dockerfile
from fairing.context import BuildContext, Link
from fairing.preprocessors.files import collect_input_files
from fairing.preprocessors.python import PythonPreprocessor
from fairing.requirements import read_requirements_file, parse_requirements, redact
from fairing.runtime.result import UnsignedResult, decode, encode, new_key

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA" + "x" * 40 + "\n-----END OPENSSH PRIVATE KEY-----\n"


def _write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _tar_members(ctx: BuildContext) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(ctx.tar_bytes())) as tar:
        return {m.name: m for m in tar.getmembers()}


# -- symlinks -----------------------------------------------------------------------------


@pytest.fixture
def home_key(tmp_path):
    """A private key outside the project, as ~/.ssh/id_rsa would be."""
    return _write(tmp_path / "home" / ".ssh" / "id_rsa", PRIVATE_KEY)


def test_a_link_to_a_file_outside_the_project_is_refused_naming_link_and_target(tmp_path, home_key):
    proj = tmp_path / "proj"
    _write(proj / "data" / "train.csv", "1,2\n")
    os.symlink(home_key, proj / "data" / "model.bin")
    with pytest.raises(OutsideProjectError) as err:
        collect_input_files(["data"], proj)
    message = str(err.value)
    assert str(proj / "data" / "model.bin") in message and str(home_key) in message
    assert "name the link in input_files" in message


def test_an_explicitly_listed_link_is_packaged_under_its_own_path_after_the_rules_see_its_target(tmp_path, home_key):
    proj = tmp_path / "proj"
    shared = _write(tmp_path / "shared" / "weights.bin", "w" * 10)
    (proj / "data").mkdir(parents=True)
    os.symlink(shared, proj / "data" / "weights.bin")
    os.symlink(home_key, proj / "data" / "model.bin")
    found = collect_input_files(["data/weights.bin"], proj)
    assert found == {"data/weights.bin": shared}  # its own path, not the target's name at the top level
    # the target is a credential by its path (.ssh/id_rsa): refused even when the link is listed
    with pytest.raises(SecretInContextError) as err:
        collect_input_files(["data/model.bin"], proj)
    assert str(home_key) in str(err.value) and PRIVATE_KEY not in str(err.value)
    # a key behind an innocent name is caught by the content scan
    hidden = _write(tmp_path / "elsewhere" / "blob.dat", PRIVATE_KEY)
    os.symlink(hidden, proj / "data" / "blob.dat")
    with pytest.raises(SecretInContextError, match="a private key"):
        collect_input_files(["data/blob.dat"], proj)


def test_links_inside_the_project_stay_links_and_their_targets_are_packaged(tmp_path):
    proj = tmp_path / "proj"
    _write(proj / "data" / "v2" / "file.csv", "a,b\n")
    _write(proj / "models" / "best" / "w.txt", "w")
    os.symlink("v2/file.csv", proj / "data" / "latest.csv")
    os.symlink("../models/best", proj / "data" / "best")  # a link to a directory outside the walked one
    found = collect_input_files(["data"], proj)
    assert found["data/latest.csv"] == Link("v2/file.csv")
    assert found["data/best"] == Link("../models/best")
    assert found["models/best/w.txt"] == proj / "models" / "best" / "w.txt"  # the target came along
    ctx = BuildContext(files=found, entrypoint=("true",))
    members = _tar_members(ctx)
    assert members["data/latest.csv"].issym() and members["data/latest.csv"].linkname == "v2/file.csv"
    out = tmp_path / "out"
    ctx.materialize(out)
    assert (out / "data" / "latest.csv").is_symlink() and (out / "data" / "latest.csv").read_text() == "a,b\n"
    assert (out / "data" / "best" / "w.txt").read_text() == "w"


def test_a_link_in_the_context_cannot_point_outside_it():
    with pytest.raises(ConfigurationError, match="outside the build context"):
        BuildContext(files={"data/x": Link("../../etc/passwd")}, entrypoint=("true",))
    with pytest.raises(ConfigurationError, match="relative path"):
        BuildContext(files={"data/x": Link("/etc/passwd")}, entrypoint=("true",))


# -- layout, mapping, collisions ---------------------------------------------------------------


def test_paths_outside_the_project_must_be_mapped_and_keep_their_layout(tmp_path):
    proj = tmp_path / "proj"
    _write(proj / "config.yaml", "mine")
    shared = _write(tmp_path / "shared" / "config.yaml", "shared")
    _write(tmp_path / "dataset" / "train" / "labels.csv", "train")
    _write(tmp_path / "dataset" / "test" / "labels.csv", "test")
    with pytest.raises(OutsideProjectError) as err:
        collect_input_files(["config.yaml", "../shared/config.yaml"], proj)
    assert "'../shared/config.yaml'" in str(err.value) and "input_files={" in str(err.value)
    with pytest.raises(OutsideProjectError):
        collect_input_files(["../dataset"], proj)

    found = collect_input_files({"config.yaml": "config.yaml", "../shared/config.yaml": "conf/shared.yaml",
                                 "../dataset": "dataset"}, proj)
    assert found == {"config.yaml": proj / "config.yaml", "conf/shared.yaml": shared,
                     "dataset/train/labels.csv": tmp_path / "dataset" / "train" / "labels.csv",
                     "dataset/test/labels.csv": tmp_path / "dataset" / "test" / "labels.csv"}


def test_two_sources_for_one_image_path_is_an_error(tmp_path):
    proj = tmp_path / "proj"
    _write(proj / "config.yaml", "mine")
    _write(tmp_path / "shared" / "config.yaml", "shared")
    with pytest.raises(PathCollisionError) as err:
        collect_input_files({"config.yaml": "config.yaml", "../shared/config.yaml": "config.yaml"}, proj)
    assert "'config.yaml'" in str(err.value) and "../shared/config.yaml" in str(err.value)
    # the same file reached twice (a directory and a file in it) is one entry
    assert set(collect_input_files([".", "config.yaml"], proj)) == {"config.yaml"}


def test_a_string_is_one_path_and_bad_forms_are_configuration_errors(tmp_path):
    _write(tmp_path / "data" / "a.csv", "1")
    assert set(collect_input_files("data", tmp_path)) == {"data/a.csv"}
    with pytest.raises(ConfigurationError, match="a dict of path"):
        collect_input_files(42, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="path in the image"):
        collect_input_files({"data": 3}, tmp_path)  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="leaves the working directory"):
        collect_input_files({"data": "../up"}, tmp_path)


def test_the_entry_script_outside_base_dir_is_refused(tmp_path):
    script = _write(tmp_path / "elsewhere" / "train.py", "print(1)\n")
    with pytest.raises(OutsideProjectError, match="base_dir"):
        PythonPreprocessor(script, base_dir=tmp_path / "proj", requirements=[]).context()


# -- credentials ----------------------------------------------------------------------------------

#: Credential files people keep in a project (the names secret scanners and gitignore templates list).
CREDENTIAL_FILES = [
    ".env", ".env.local", "prod.env", ".envrc", ".aws/credentials", ".aws/config", ".ssh/id_ed25519",
    "id_rsa", "certs/server.pem", "certs/server.key", "client.p12", "store.pfx", "keystore.jks", "putty.ppk",
    "credentials.json", "my-project-0123456789ab.json", "application_default_credentials.json",
    "service-account-prod.json", "gcloud-service-key.json", "client_secret_123.json", ".npmrc", ".boto",
    ".s3cfg", ".pgpass", ".dockercfg", ".docker/config.json", ".vault-token", "kaggle.json", "_netrc",
    ".netrc", ".pypirc", ".git-credentials", "terraform.tfvars", "prod.tfvars", "terraform.tfstate",
    "secrets.yaml", ".htpasswd", "kubeconfig", ".kube/config", "deploy/.config/gcloud/credentials.db",
]


def test_credential_files_are_never_walked_into_a_context_and_negations_cannot_bring_them_back(tmp_path):
    assert len(CREDENTIAL_FILES) >= 38
    for name in CREDENTIAL_FILES:
        _write(tmp_path / name, "placeholder")
    _write(tmp_path / "train.py", "print(1)\n")
    _write(tmp_path / ".env.example", "TOKEN=\n")
    _write(tmp_path / ".gitignore", "!.env\n!*.pem\n!credentials.json\n")
    assert set(collect_input_files(["."], tmp_path)) == {"train.py", ".env.example"}
    # naming the file itself is the way to package one
    assert set(collect_input_files(["credentials.json", "train.py"], tmp_path)) == {"credentials.json", "train.py"}


def test_content_scan_refuses_each_file_naming_it_and_how_to_allow_it(tmp_path):
    token = "ghp_" + uuid.uuid4().hex + "abcd"
    aws = "AKIA" + "ABCDEFGHIJKLMNOP"
    _write(tmp_path / "train.py", "print(1)\n")
    _write(tmp_path / "data" / "notes.txt", f"line one\nkey = {aws}\n")
    _write(tmp_path / "data" / "model.bin", PRIVATE_KEY)
    _write(tmp_path / "conf" / "app.cfg", f"token: {token}\n")
    _write(tmp_path / "conf" / "doc.md", f"example: {aws}  # pragma: allowlist secret\n")
    with pytest.raises(SecretInContextError) as err:
        collect_input_files(["."], tmp_path)
    message = str(err.value)
    assert set(err.value.paths) == {"data/notes.txt", "data/model.bin", "conf/app.cfg"}
    assert "data/notes.txt" in message and "an AWS access key (line 2)" in message
    assert "a private key" in message and "a GitHub token" in message
    assert "secret_env" in message and "pragma: allowlist secret" in message
    assert aws not in message and token not in message and "OPENSSH PRIVATE KEY-----\nb3" not in message
    # named by its own path: past the name rules, never past the scan
    with pytest.raises(SecretInContextError, match=r"a private key \(line 1\)"):
        collect_input_files(["data/model.bin"], tmp_path)


# -- requirements ---------------------------------------------------------------------------------


def test_requirements_files_are_parsed_as_pip_reads_them(tmp_path, workdir):
    proj = tmp_path / "proj"
    _write(proj / "requirements.txt",
           "# top\n--index-url https://ci:s3cr3t@pypi.example/simple\n-r deps/pinned.txt\n"
           "-c deps/constraints.txt\nzlib-ng ; python_version >= '3.8'  # a comment\n")
    _write(proj / "deps" / "pinned.txt", "numpy==1.26.4 \\\n    --hash=sha256:aaa \\\n    --hash=sha256:bbb\nabc==1\n")
    _write(proj / "deps" / "constraints.txt", "urllib3<3\n")
    reqs = read_requirements_file(proj / "requirements.txt")  # -r/-c relative to the file, not the cwd
    assert reqs.lines == ("--index-url https://ci:s3cr3t@pypi.example/simple",
                          "numpy==1.26.4      --hash=sha256:aaa      --hash=sha256:bbb", "abc==1",
                          "zlib-ng ; python_version >= '3.8'")
    assert reqs.constraints == ("urllib3<3",)
    ctx = BuildContext(files={}, entrypoint=("true",), requirements=reqs.lines, constraints=reqs.constraints)
    assert ctx.requirements[0].startswith("numpy==1.26.4") and "--hash=sha256:bbb" in ctx.requirements[0]
    assert ctx.pip_indexes.env() == {"PIP_INDEX_URL": "https://ci:s3cr3t@pypi.example/simple"}
    text = ctx.requirements_txt().decode() + ctx.constraints_txt().decode() + repr(ctx)
    assert "s3cr3t" not in text and "-c constraints.txt" in text and "ci:***@pypi.example" in repr(ctx)


@pytest.mark.parametrize("line, match", [
    ("numpy=1.0", "is not valid"),
    ("--frobnicate", "does not accept --frobnicate"),
    ("pkg @ git+https://me:tok3n@github.com/me/pkg", "has credentials"),
    ("-r missing.txt", "does not exist"),
])
def test_bad_requirement_lines_are_clear_errors(tmp_path, line, match):
    with pytest.raises((ConfigurationError, EntryPointNotFoundError), match=match) as err:
        parse_requirements([line], tmp_path)
    assert "tok3n" not in str(err.value)


def test_redaction_and_the_dockerfile_path_refuse_to_write_credentials():
    assert redact("see https://user:TOKEN@host/simple and http://TOKEN2@h/") == \
        "see https://user:***@host/simple and http://***@h/"
    ctx = BuildContext(files={}, entrypoint=("true",), requirements=["--extra-index-url https://u:TOKEN@h/s", "six"])
    with pytest.raises(ConfigurationError) as err:
        render_dockerfile(ctx, "python:3.11-slim")
    assert "TOKEN" not in str(err.value) and "u:***@h" in str(err.value)
    public = BuildContext(files={}, entrypoint=("true",), requirements=["--extra-index-url https://h/s", "six"])
    assert public.requirements_txt() == b"--extra-index-url https://h/s\nsix\n"


# -- the result channel -------------------------------------------------------------------------------


class _Boom:
    """Unpickling this creates a file: proof that a line was (or was not) unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_only_lines_signed_with_the_jobs_key_are_unpickled(tmp_path):
    key = new_key()
    marker = str(tmp_path / "pwned")
    genuine = encode({"ok": True, "value": 42}, key)
    forged_body = encode({"ok": True, "value": _Boom(marker)}, b"guess").split(":")[2]
    unsigned = f"fairing-result:v1:{forged_body}"
    wrong_mac = encode({"ok": True, "value": _Boom(marker)}, new_key())
    for forged in (unsigned, wrong_mac):
        with pytest.raises(UnsignedResult):
            decode(f"log line\n{forged}\n", key)
        # a forged line after the genuine one does not replace it
        assert decode(f"{genuine}\nprinted later: {forged}\n", key) == {"ok": True, "value": 42}
    assert not os.path.exists(marker)
    with pytest.raises(ValueError, match="no fairing result"):
        decode("nothing here", key)


def test_pods_read_the_result_key_from_a_mounted_secret_not_an_env_value():
    from fairing.deployers.job import JobDeployer
    from fairing.deployers.kubernetes import result_key_secret

    pod = JobDeployer(namespace="ns").manifest("localhost:5000/x@sha256:" + "a" * 64, "j1")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "FAIRING_RESULT_KEY" not in env and env["FAIRING_RESULT_KEY_FILE"].startswith("/var/run/")
    volume = next(v for v in pod["volumes"] if v["name"] == "fairing-result-key")
    assert volume["secret"]["secretName"] == result_key_secret("j1")
    assert any(m["name"] == "fairing-result-key" and m["readOnly"] for m in container["volumeMounts"])


def test_an_explicitly_listed_link_to_an_outside_directory_is_walked_under_the_links_path(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    _write(tmp_path / "datasets" / "mnist" / "train.csv", "1")
    _write(tmp_path / "datasets" / "mnist" / ".env", "TOKEN=x")  # the credential rules see the target's files
    os.symlink(tmp_path / "datasets" / "mnist", proj / "mnist")
    with pytest.raises(OutsideProjectError, match="mnist"):
        collect_input_files(["."], proj)
    assert collect_input_files(["mnist"], proj) == {"mnist/train.csv": tmp_path / "datasets" / "mnist" / "train.csv"}


def test_find_links_paths_are_relative_to_their_file(tmp_path, workdir):
    _write(tmp_path / "proj" / "requirements.txt", "--find-links wheels\n--pre\npkg\n")
    reqs = read_requirements_file(tmp_path / "proj" / "requirements.txt")
    assert reqs.lines == (f"--find-links {tmp_path / 'proj' / 'wheels'}", "--pre", "pkg")


def test_the_scanner_reads_bytes_and_knows_token_shapes(tmp_path):
    from fairing.preprocessors.secrets import scan

    cases = {
        "url.cfg": (b"db = postgres://app:hunter22@db.internal/prod\n", ["a password in a URL"]),
        "slack.txt": (b"x\nxoxb-1234567890-abcdefghij\n", ["a Slack token"]),
        "hf.bin": (b"\x00\x01hf_" + b"A" * 34 + b"\x00", ["a Hugging Face token"]),
        "tail.txt": (b"id=XAKIAABCDEFGHIJKLMNOP sha256:" + b"ab" * 32 + b"\n", []),  # inside a word; a hash
    }
    for name, (data, kinds) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert [f.kind for f in scan(tmp_path / name)] == kinds, name


def test_a_function_with_hashed_requirements_must_pin_cloudpickle_itself(tmp_path):
    import cloudpickle

    from fairing.preprocessors.function import FunctionPreprocessor

    hashed = ["six==1.16.0 --hash=sha256:" + "a" * 64]
    with pytest.raises(ConfigurationError, match=f"cloudpickle=={cloudpickle.__version__}.*with their hashes"):
        FunctionPreprocessor(len, ([],), requirements=hashed, base_dir=tmp_path).context()
    pinned = [*hashed, f"cloudpickle=={cloudpickle.__version__} --hash=sha256:" + "b" * 64]
    ctx = FunctionPreprocessor(len, ([],), requirements=pinned, base_dir=tmp_path).context()
    assert ctx.requirements == tuple(pinned)  # nothing added, order kept
    plain = FunctionPreprocessor(len, ([],), requirements=["six"], base_dir=tmp_path).context()
    assert plain.requirements == ("six", f"cloudpickle=={cloudpickle.__version__}")


def test_an_in_project_link_to_a_credential_is_refused(tmp_path):
    _write(tmp_path / ".env", "TOKEN=x")
    _write(tmp_path / ".aws" / "credentials", "[default]")
    _write(tmp_path / "data" / "a.csv", "1")
    os.symlink("../.env", tmp_path / "data" / "settings")
    with pytest.raises(SecretInContextError, match=r"\.env"):
        collect_input_files(["data"], tmp_path)
    os.remove(tmp_path / "data" / "settings")
    os.symlink("../.aws", tmp_path / "data" / "aws")
    with pytest.raises(SecretInContextError, match=r"\.aws"):
        collect_input_files(["data"], tmp_path)


def test_a_kaniko_build_reads_credentialed_indexes_from_a_mounted_pip_config():
    from fairing.builders.dockerfile import docker_build_context, pip_config

    ctx = BuildContext(files={"a.py": b"1"}, entrypoint=("true",),
                       requirements=["--index-url https://u:TOKEN@h/simple", "--extra-index-url https://h2/s", "six"])
    text = render_dockerfile(ctx, "python:3.11-slim", pip_config_file="/kaniko/fairing-pip/pip.conf")
    assert "RUN PIP_CONFIG_FILE=/kaniko/fairing-pip/pip.conf " in text and "TOKEN" not in text
    assert b"TOKEN" not in docker_build_context(ctx, text).tar_bytes()
    assert pip_config(ctx) == b"[global]\nindex-url = https://u:TOKEN@h/simple\nextra-index-url = https://h2/s\n"
