"""Every byte fairing ships goes through one scan, on real files, links and tars: each kind of
shipped file with a planted token is refused naming file and line (and cell), credential files
are recognised by their shape whatever their name, text in UTF-16 and files past 64 MiB are
read whole, and a pragma exempts one finding. Link targets obey the ignore rules, a generated
file never replaces the user's, names that are not UTF-8 and links to the project root pack."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile
import uuid

import nbformat
import pytest

from fairing import OutsideProjectError, PackagingError, PathCollisionError, SecretInContextError
from fairing.context import BuildContext, Link
from fairing.preprocessors.files import collect_input_files
from fairing.preprocessors.function import FunctionPreprocessor
from fairing.preprocessors.notebook import FullNotebookPreprocessor, NotebookPreprocessor
from fairing.preprocessors.python import PythonPreprocessor
from fairing.preprocessors.secrets import scan, scan_bytes


def _github() -> str:
    return "ghp_" + uuid.uuid4().hex + "abcd"  # 36 characters after the prefix, new for each test


def _openai() -> str:
    return "sk-proj-" + uuid.uuid4().hex + uuid.uuid4().hex[:16]


def _aws() -> str:
    return "AKIA" + "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[b % 32] for b in uuid.uuid4().bytes)


def _pem() -> str:
    body = base64.b64encode(os.urandom(96)).decode()
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"


def _write(path, text: str = "", data: bytes = b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    if text:
        path.write_text(text)
    else:
        path.write_bytes(data)
    return path


def _notebook(path, cells, outputs=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    for index, outs in (outputs or {}).items():
        nb.cells[index].outputs = outs
    nbformat.write(nb, str(path))
    return path


def _refused(make, *expected: str, secret: str) -> SecretInContextError:
    with pytest.raises(SecretInContextError) as err:
        make()
    message = str(err.value)
    for text in expected:
        assert text in message, (text, message)
    assert secret not in message and secret not in repr(err.value.paths)
    return err.value


# -- each kind of shipped file -------------------------------------------------------------------


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    _write(root / "train.py", "print('train')\n")
    return root


def test_a_walked_file_is_refused_naming_file_and_line(proj):
    token = _github()
    _write(proj / "helpers" / "util.py", f"import os\n\nTOKEN = '{token}'\n")
    _refused(lambda: PythonPreprocessor(proj / "train.py", input_files=["helpers"], requirements=[]).context(),
             "helpers/util.py", "a GitHub token (line 3)", secret=token)


def test_a_named_file_is_scanned_too(proj):
    token = _aws()
    _write(proj / "notes.txt", f"one\ntwo\nkey={token}\n")
    err = _refused(lambda: PythonPreprocessor(proj / "train.py", input_files=["notes.txt"], requirements=[]).context(),
                   "notes.txt", "an AWS access key (line 3)", secret=token)
    assert err.paths == ("notes.txt",)


def test_a_link_target_is_scanned_inside_and_outside_the_project(proj, tmp_path):
    token = _github()
    _write(proj / "store" / "v1.txt", f"\n{token}\n")
    (proj / "data").mkdir()
    os.symlink("../store/v1.txt", proj / "data" / "latest.txt")  # inside: stays a link, its target comes along
    _refused(lambda: collect_input_files(["data"], proj), "store/v1.txt", "a GitHub token (line 2)", secret=token)
    outside = _write(tmp_path / "elsewhere" / "weights.txt", f"w\nw\n{token}\n")
    os.remove(proj / "data" / "latest.txt")
    os.symlink(outside, proj / "data" / "weights.txt")  # outside, named: packaged as its target, scanned
    _refused(lambda: collect_input_files(["data/weights.txt"], proj), str(outside), "(line 3)", secret=token)


def test_the_entry_script_is_scanned(proj):
    token = _openai()
    _write(proj / "train.py", f"import os\nclient_key = '{token}'\n")
    _refused(lambda: PythonPreprocessor(proj / "train.py", requirements=[]).context(),
             "train.py", "an OpenAI key (line 2)", secret=token)


def test_the_script_converted_from_a_notebook_is_scanned_by_cell(proj):
    token = _openai()
    nb = _notebook(proj / "analysis.ipynb", ["import os", f"\n%env OPENAI_API_KEY={token}\nprint(1)"])
    err = _refused(lambda: NotebookPreprocessor(nb, requirements=[]).context(),
                   f"{nb} (converted to analysis.py)", "an OpenAI key (cell 2, line 2)", secret=token)
    assert err.paths == ("analysis.py",)


def test_a_whole_notebook_with_a_token_in_a_saved_output_is_refused_naming_the_cell(proj):
    token = _github()
    printed = nbformat.v4.new_output("stream", name="stdout", text=f"logged in\ntoken is {token}\n")
    nb = _notebook(proj / "report.ipynb", ["print(1)", "login()"], outputs={1: [printed]})
    _refused(lambda: FullNotebookPreprocessor(nb, requirements=[]).context(),
             "report.ipynb", "a GitHub token (cell 2, output 1, line 2)", secret=token)
    # a walked notebook is read the same way
    _refused(lambda: collect_input_files(["."], proj), "report.ipynb", "cell 2, output 1", secret=token)


def test_requirement_files_are_scanned_except_the_index_lines_that_reach_pip_only(proj):
    password = "pw" + uuid.uuid4().hex
    _write(proj / "requirements.txt", f"--index-url https://ci:{password}@pypi.example/simple\n"
                                      "-r deps/more.txt\nsix\n")
    _write(proj / "deps" / "more.txt", f"numpy\n--find-links https://me:{password}@files.example/wheels\n")
    err = _refused(lambda: PythonPreprocessor(proj / "train.py").context(),
                   f"{proj / 'deps' / 'more.txt'} (requirements)", "a password in a URL (line 2)", secret=password)
    assert str(proj / "requirements.txt") not in str(err)  # its index URL goes to pip's environment only
    (proj / "deps" / "more.txt").write_text("numpy\n")
    ctx = PythonPreprocessor(proj / "train.py").context()
    assert password not in ctx.requirements_txt().decode() and ctx.requirements == ("numpy", "six")


_MODULE_TOKEN = _github()


def _uses_a_token():
    return len(_MODULE_TOKEN)


def test_the_pickled_function_and_the_local_modules_it_uses_are_scanned(proj, tmp_path, monkeypatch):
    _refused(lambda: FunctionPreprocessor(_uses_a_token, base_dir=proj).context(),
             "the pickled _uses_a_token", secret=_MODULE_TOKEN)
    token = _github()
    _write(tmp_path / "mods" / "fairing_scan_helper_mod.py", f"KEY = '{token}'\ndef f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    import fairing_scan_helper_mod as helper

    def uses_module():
        return helper.f()

    try:
        _refused(lambda: FunctionPreprocessor(uses_module, base_dir=proj).context(),
                 ".fairing/modules/fairing_scan_helper_mod.py", "a GitHub token (line 1)", secret=token)
    finally:
        sys.modules.pop("fairing_scan_helper_mod", None)


def test_a_refused_context_never_reaches_a_tar(proj):
    token = _github()
    _write(proj / "train.py", f"print('{token}')\n")
    with pytest.raises(SecretInContextError):
        PythonPreprocessor(proj / "train.py", requirements=[]).context()
    _write(proj / "train.py", "print('clean')\n")
    tar = PythonPreprocessor(proj / "train.py", requirements=[]).context().tar_bytes()
    assert token.encode() not in tar


# -- credential files by their shape -------------------------------------------------------------


def test_kubeadm_admin_conf_is_recognised_by_its_decoded_key_and_a_token_user_too(proj):
    key = base64.b64encode(_pem().encode()).decode()
    cert = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n").decode()
    _write(proj / "admin.conf", "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n"
           "  name: kubernetes\nkind: Config\nusers:\n- name: kubernetes-admin\n  user:\n"
           f"    client-certificate-data: {cert}\n    client-key-data: {key}\n")
    _refused(lambda: collect_input_files(["."], proj), "admin.conf", "a private key (base64) (line 11)", secret=key)
    token = uuid.uuid4().hex
    _write(proj / "admin.conf", "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n"
                                f"    token: {token}\n")
    _refused(lambda: collect_input_files(["admin.conf"], proj), "a kubeconfig user credential (line 6)",
             secret=token)
    # the same key name in a file that is not a kubeconfig is left alone
    _write(proj / "admin.conf", f"steps:\n  - token: {uuid.uuid4().hex}\n")
    assert "admin.conf" in collect_input_files(["."], proj)


def test_a_docker_auth_file_outside_dot_docker_is_refused(proj):
    auth = base64.b64encode(b"me:" + uuid.uuid4().hex.encode()).decode()
    _write(proj / "deploy" / "config.json", json.dumps({"auths": {"r.example": {"auth": auth}}}, indent=1))
    _refused(lambda: collect_input_files(["."], proj), "deploy/config.json", "a Docker registry credential (line 4)",
             secret=auth)
    _write(proj / "deploy" / "config.json", json.dumps({"auths": {"r.example": {}}, "credsStore": "desktop"}))
    assert "deploy/config.json" in collect_input_files(["."], proj)


def test_google_oauth_token_and_client_files_and_service_accounts_are_refused_by_shape(proj):
    refresh = "1//0" + uuid.uuid4().hex + uuid.uuid4().hex
    secret = "s" + uuid.uuid4().hex
    _write(proj / "token.json", json.dumps({"token": "ya29.x", "refresh_token": refresh, "client_id": "1.apps",
                                            "client_secret": secret}))
    _refused(lambda: collect_input_files(["."], proj), "token.json", "an OAuth refresh token",
             "an OAuth client secret", secret=refresh)
    os.remove(proj / "token.json")
    # credentials.json is a credential by its name; named, it passes the name rule but not the scan
    _write(proj / "credentials.json", json.dumps({"installed": {"client_id": "1.apps", "client_secret": secret}}))
    assert "credentials.json" not in collect_input_files(["."], proj)
    _refused(lambda: collect_input_files(["credentials.json"], proj), "an OAuth client secret (line 1)", secret=secret)
    os.remove(proj / "credentials.json")
    pem = _pem()
    _write(proj / "keys" / "ml.json", json.dumps({"type": "service_account", "project_id": "p",
                                                  "private_key": pem}, indent=2))
    _refused(lambda: collect_input_files(["."], proj), "keys/ml.json", "a Google service account key (line 2)",
             "a private key", secret=pem.splitlines()[1])


# -- encodings and sizes -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_with_or_without_a_bom_is_read(tmp_path, encoding):
    token = _github()
    text = f"Name    Value\r\n----    -----\r\nTOKEN   {token}\r\n"  # what PowerShell's > writes
    path = _write(tmp_path / "env.txt", data=text.encode(encoding))
    assert [(f.kind, f.line) for f in scan(path)] == [("a GitHub token", 3)]
    _refused(lambda: collect_input_files(["env.txt"], tmp_path), "env.txt", "(line 3)", secret=token)


def test_a_file_past_64_mib_is_read_to_its_end(tmp_path):
    token = _github()
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(65 << 20)  # sparse: 65 MiB of zeros
        fh.seek(65 << 20)
        fh.write(f"\n{token}\n".encode())
    assert [(f.kind, f.line) for f in scan(path)] == [("a GitHub token", 2)]


def test_a_file_that_cannot_be_read_whole_is_refused_not_skipped(tmp_path):
    # /proc/self/mem is a regular file whose first read fails (EIO), as an unreadable file does for anyone
    with pytest.raises(PackagingError, match=r"Cannot read /proc/self/mem to check it for credentials"):
        collect_input_files({"/proc/self/mem": "mem"}, tmp_path)


def test_tokens_across_the_scanners_chunk_boundaries_are_found():
    token = _github().encode()
    for offset in [*range((1 << 20) - 4200, (1 << 20) - 4000, 17), *range((1 << 20) - 60, (1 << 20) + 10, 7)]:
        data = bytearray(b"x" * (2 << 20))
        data[offset - 1:offset + len(token) + 1] = b" " + token + b" "
        assert [f.kind for f in scan_bytes(bytes(data))] == ["a GitHub token"], offset


# -- the pragma ---------------------------------------------------------------------------------


def test_a_pragma_exempts_one_finding_not_the_line(tmp_path):
    allow = "# pragma: allowlist secret"
    one, two = _aws(), _github()
    assert scan_bytes(f"example = '{one}'  {allow}\n".encode()) == []
    assert [f.kind for f in scan_bytes(f"a = '{one}'; b = '{two}'  {allow}\n".encode())] == ["an AWS access key"]
    assert scan_bytes(f"a = '{one}' {allow}; b = '{two}' {allow}\n".encode()) == []
    # a long one-line file: many tokens, one pragma
    line = " ".join(_github() for _ in range(50)) + f" {allow} " + " ".join(_aws() for _ in range(50))
    path = _write(tmp_path / "dump.json", line)
    found = scan(path)
    assert {f.kind for f in found} == {"a GitHub token", "an AWS access key"}
    # a pragma on another line exempts nothing here
    assert [f.kind for f in scan_bytes(f"{allow}\nkey = '{one}'\n".encode())] == ["an AWS access key"]


# -- links, ignore rules, collisions ------------------------------------------------------------


def test_a_link_to_a_target_the_ignore_rules_exclude_is_refused(proj):
    _write(proj / ".fairingignore", "private/\n")
    _write(proj / "private" / "notes.txt", "not for the image\n")
    (proj / "data").mkdir()
    os.symlink("../private/notes.txt", proj / "data" / "notes.txt")
    with pytest.raises(OutsideProjectError) as err:
        collect_input_files(["."], proj)
    assert "ignore rules exclude" in str(err.value) and "private/" in str(err.value)
    with pytest.raises(OutsideProjectError):
        collect_input_files(["data"], proj)
    # a .gitignore in a subdirectory, and the default rules (a virtualenv), count the same
    os.remove(proj / "data" / "notes.txt")
    _write(proj / "models" / ".gitignore", "*.ckpt\n")
    _write(proj / "models" / "last.ckpt", "weights")
    os.symlink("../models/last.ckpt", proj / "data" / "last.ckpt")
    with pytest.raises(OutsideProjectError, match="last.ckpt"):
        collect_input_files(["data"], proj)
    os.remove(proj / "data" / "last.ckpt")
    _write(proj / ".venv" / "lib" / "site.py", "x")
    os.symlink("../.venv/lib", proj / "data" / "lib")
    with pytest.raises(OutsideProjectError, match="a default rule"):
        collect_input_files(["data"], proj)
    os.remove(proj / "data" / "lib")
    # a target that is not ignored comes along
    _write(proj / "shared" / "a.csv", "1\n")
    os.symlink("../shared/a.csv", proj / "data" / "a.csv")
    found = collect_input_files(["data"], proj)
    assert found == {"data/a.csv": Link("../shared/a.csv"), "shared/a.csv": proj / "shared" / "a.csv"}


def test_a_converted_notebook_never_replaces_the_projects_own_script(proj):
    nb = _notebook(proj / "analysis.ipynb", ["print('from the notebook')"])
    _write(proj / "analysis.py", "print('my own module')\n")
    with pytest.raises(PathCollisionError) as err:
        NotebookPreprocessor(nb, input_files=["."], requirements=[]).context()
    message = str(err.value)
    assert "'analysis.py'" in message and ".fairingignore" in message and "analysis.ipynb" in message
    # without the user's file in the inputs, the conversion lands there
    ctx = NotebookPreprocessor(nb, requirements=[]).context()
    assert b"from the notebook" in ctx.files["analysis.py"]
    # nor does a file of fairing's own runtime
    with pytest.raises(PathCollisionError, match="fairing puts its own runtime"):
        PythonPreprocessor(proj / "train.py", input_files={"analysis.py": ".fairing/payload.json"},
                           requirements=[]).context()


def test_links_to_the_project_root_stay_links(proj):
    os.symlink(".", proj / "self")
    (proj / "sub").mkdir()
    os.symlink("..", proj / "sub" / "up")
    os.symlink(proj, proj / "abs")
    found = collect_input_files(["."], proj)
    assert (found["self"], found["sub/up"], found["abs"]) == (Link("."), Link(".."), Link("."))
    with tarfile.open(fileobj=io.BytesIO(BuildContext(files=found, entrypoint=("true",)).tar_bytes())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["self"].issym() and members["self"].linkname == "."
    assert members["sub/up"].linkname == ".." and "train.py" in members
    # only a subdirectory given: its link to the root brings the project along
    assert set(collect_input_files(["sub"], proj)) >= {"sub/up", "train.py"}


def test_a_file_name_that_is_not_utf8_gets_a_pax_path_record(tmp_path):
    root = os.fsencode(tmp_path / "proj")
    os.makedirs(root)
    with open(os.path.join(root, b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"bonjour\n")
    os.symlink(b"caf\xe9.txt", os.path.join(root, b"lien\xe9"))
    found = collect_input_files(["."], tmp_path / "proj")
    ctx = BuildContext(files=found, entrypoint=("true",))
    data = ctx.tar_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8", errors="surrogateescape") as tar:
        members = {os.fsencode(m.name): m for m in tar.getmembers()}
        assert tar.extractfile(members[b"caf\xe9.txt"]).read() == b"bonjour\n"
        assert members[b"caf\xe9.txt"].pax_headers["hdrcharset"] == "BINARY"
        assert os.fsencode(members[b"lien\xe9"].linkname) == b"caf\xe9.txt"
    # what tarfile itself writes for these entries (the first wave's writer)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, source, _rel in ctx._entries(""):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if isinstance(source, Link):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, source.target, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = source.stat().st_size, 0o644
                with source.open("rb") as fh:
                    tar.addfile(info, fh)
    assert data == buf.getvalue()
    out = tmp_path / "out"
    ctx.materialize(out)
    assert (out / os.fsdecode(b"caf\xe9.txt")).read_bytes() == b"bonjour\n"
