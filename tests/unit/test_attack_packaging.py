"""Attacks on the one scan (issue 25), as a careless or unlucky user would make them, on real
files, links, FIFOs and tars: each test plants a realistic fake token where the scan might not
look and checks that packaging is refused with a fairing error (never a hang, a raw exception or
the token in a tar, an error message or an event)."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid

import nbformat
import pytest

from fairing import FairingError, PackagingError, SecretInContextError
from fairing.preprocessors.files import collect_input_files
from fairing.preprocessors.notebook import FullNotebookPreprocessor, NotebookPreprocessor
from fairing.preprocessors.python import PythonPreprocessor
from fairing.preprocessors.secrets import scan, scan_bytes


def _github() -> str:
    return "ghp_" + uuid.uuid4().hex + "abcd"


def _aws_secret() -> str:
    return base64.b64encode(os.urandom(30)).decode()  # 40 characters, as AWS writes them


def _pem() -> bytes:
    body = base64.b64encode(os.urandom(300)).decode()
    return ("-----BEGIN PRIVATE KEY-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
            + "\n-----END PRIVATE KEY-----\n").encode()


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text("print('train')\n")
    return root


def _refused(make, secret: str, *expected: str, error=SecretInContextError):
    with pytest.raises(error) as err:
        make()
    assert secret not in str(err.value) and secret not in repr(err.value)
    for text in expected:
        assert text in str(err.value), (text, str(err.value))
    return err.value


# -- files that are not regular files ---------------------------------------------------------


def _unblock_later(fifo, after: float):
    """Open ``fifo`` for writing after ``after`` seconds, so a reader blocked on it returns
    (the test fails on time instead of hanging forever)."""
    def run():
        time.sleep(after)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_fifo_named_in_input_files_is_refused_at_once_not_waited_on(proj):
    os.mkfifo(proj / "pipe")
    _unblock_later(proj / "pipe", 10)
    started = time.monotonic()
    with pytest.raises(PackagingError) as err:
        PythonPreprocessor(proj / "train.py", input_files=["pipe"], requirements=[]).context()
    assert time.monotonic() - started < 5
    assert "not a regular file" in str(err.value)


def test_a_named_link_to_a_fifo_or_a_device_is_refused_as_not_a_regular_file(proj, tmp_path):
    os.mkfifo(tmp_path / "outside_pipe")
    _unblock_later(tmp_path / "outside_pipe", 10)
    os.symlink(tmp_path / "outside_pipe", proj / "pl")
    os.symlink("/dev/zero", proj / "zero")
    for name in ("pl", "zero"):
        started = time.monotonic()
        with pytest.raises(PackagingError) as err:
            PythonPreprocessor(proj / "train.py", input_files=[name], requirements=[]).context()
        assert time.monotonic() - started < 5
        assert "not a regular file" in str(err.value), str(err.value)


def test_a_walked_fifo_and_socket_are_left_out_without_waiting(proj):
    import socket

    os.mkfifo(proj / "pipe")
    _unblock_later(proj / "pipe", 10)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(proj / "s.sock"))
        started = time.monotonic()
        files = collect_input_files(["."], proj)
        assert time.monotonic() - started < 5
        assert "pipe" not in files and "s.sock" not in files
    finally:
        sock.close()


# -- bytes fairing writes itself: the payload and the environment --------------------------------


def test_a_token_in_script_arguments_never_reaches_the_payload_in_the_tar(proj):
    token = _github()
    _refused(lambda: PythonPreprocessor(proj / "train.py", args=["--token", token], requirements=[]).context(),
             token, "a GitHub token")


def test_a_token_in_notebook_parameters_never_reaches_the_payload(proj):
    token = _github()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("key = None", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, str(proj / "run.ipynb"))
    _refused(lambda: FullNotebookPreprocessor(proj / "run.ipynb", parameters={"key": token},
                                              requirements=[]).context(), token, "a GitHub token")


def test_a_token_in_env_never_reaches_the_image_config(proj):
    token = _github()
    _refused(lambda: PythonPreprocessor(proj / "train.py", env={"GITHUB_TOKEN": token}, requirements=[]).context(),
             token, "GITHUB_TOKEN", "a GitHub token")


# -- tokens the patterns missed ----------------------------------------------------------------


@pytest.mark.parametrize("escape", ["\\n", "\\t", "\\r", "\\\\"])
def test_a_token_after_an_escape_sequence_is_found(escape):
    token = _github()
    # a JSON or Python string: "first line\nghp_..." (the byte before the token is a letter)
    assert scan_bytes(f'{{"note": "creds:{escape}{token}"}}\n'.encode())
    assert scan_bytes(f'TOKEN = "header{escape}{token}"\n'.encode())


def test_a_token_in_notebook_metadata_after_a_newline_is_refused(proj):
    token = _github()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["notes"] = f"deploy with\n{token}"
    nbformat.write(nb, str(proj / "a.ipynb"))
    _refused(lambda: FullNotebookPreprocessor(proj / "a.ipynb", requirements=[]).context(), token, "a.ipynb")
    _refused(lambda: collect_input_files(["a.ipynb"], proj), token, "a.ipynb")


def test_an_aws_secret_access_key_without_its_key_id_is_found(tmp_path):
    secret = _aws_secret()
    for text in (f'AWS_SECRET_ACCESS_KEY = "{secret}"\n', f"aws_secret_access_key={secret}\n",
                 f'{{"SecretAccessKey": "{secret}"}}\n', f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{secret}"\n'):
        assert scan_bytes(text.encode()), text


def test_docker_registry_and_identity_tokens_are_found():
    assert scan_bytes(b'{"auths": {"r.io": {"registrytoken": "abcdefgh12345678"}}}')
    assert scan_bytes(b'{"auths": {"r.io": {"identitytoken": "abcdefgh12345678"}}}')


def test_a_kubeconfig_client_key_whose_pem_does_not_start_the_base64_is_found():
    # openssl pkcs12 -nodes writes "Bag Attributes" before the key; any prefix shifts the base64
    for prefix in (b"\n", b"Bag Attributes\n", b"ab"):
        key = base64.b64encode(prefix + _pem()).decode()
        text = ("apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n"
                f"    client-certificate-data: TFMwdExTMUNSVWRKVGlCRFJWSlU=\n    client-key-data: {key}\n")
        found = scan_bytes(text.encode())
        assert found and found[0].line == 7, (prefix, found)


# -- encodings --------------------------------------------------------------------------------


def test_utf16_appended_to_a_utf8_file_is_read(tmp_path):
    # PowerShell 5's `>>` appends UTF-16LE to whatever the file held before
    token = _github()
    path = tmp_path / "log.txt"
    path.write_bytes(b"started\n" * 1000 + f"token={token}\r\n".encode("utf-16-le"))
    assert scan(path)
    path.write_bytes(b"x" * ((1 << 20) - 3) + f"token={token}\r\n".encode("utf-16-be"))  # across a chunk too
    assert scan(path)


def test_utf32_text_is_read(tmp_path):
    token = _github()
    assert scan_bytes(f"token={token}\n".encode("utf-32"))


# -- a file changed after it was scanned -------------------------------------------------------


def test_a_file_rewritten_with_the_same_size_and_modification_time_is_scanned_again(proj):
    path = proj / "data.txt"
    path.write_text("x" * 40 + "\n")
    st = os.stat(path)
    PythonPreprocessor(proj / "train.py", input_files=["data.txt"], requirements=[]).context()
    token = _github()
    path.write_text(token + "\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `cp -p`, rsync -t or tar x do
    _refused(lambda: PythonPreprocessor(proj / "train.py", input_files=["data.txt"], requirements=[]).context(),
             token, "data.txt")


# -- notebooks -------------------------------------------------------------------------------


def test_a_token_in_a_text_attachment_of_a_markdown_cell_is_refused(proj):
    token = _github()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_markdown_cell("![creds](attachment:creds.txt)")
    cell.attachments = {"creds.txt": {"text/plain": base64.b64encode(f"token {token}\n".encode()).decode()}}
    nb.cells = [cell]
    nbformat.write(nb, str(proj / "a.ipynb"))
    _refused(lambda: FullNotebookPreprocessor(proj / "a.ipynb", requirements=[]).context(), token,
             "cell 1, attachment creds.txt")


def test_a_notebook_saved_as_utf16_is_a_typed_error_and_its_token_never_ships(proj):
    token = _github()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"x = '{token}'")]
    (proj / "a.ipynb").write_bytes(nbformat.writes(nb).encode("utf-16"))
    for make in (lambda: NotebookPreprocessor(proj / "a.ipynb", requirements=[]).context(),
                 lambda: FullNotebookPreprocessor(proj / "a.ipynb", requirements=[]).context(),
                 lambda: collect_input_files(["a.ipynb"], proj)):
        _refused(make, token, error=FairingError)


# -- Kubernetes manifests ---------------------------------------------------------------------


def test_a_kubernetes_secret_manifest_with_base64_data_is_refused(proj):
    token = _github()
    docker = json.dumps({"auths": {"r.io": {"auth": base64.b64encode(b"me:" + token.encode()).decode()}}})
    (proj / "k8s").mkdir()
    (proj / "k8s" / "regcred.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\n"
        f"data:\n  .dockerconfigjson: {base64.b64encode(docker.encode()).decode()}\n"
        f"  api-token: {base64.b64encode(token.encode()).decode()}\n")
    _refused(lambda: collect_input_files(["k8s"], proj), token, "regcred.yaml", "a Kubernetes Secret's data (line 6)")
    # JSON, stringData: the same; a ConfigMap, or a Secret without data (a template), is not a credential
    assert scan_bytes(json.dumps({"kind": "Secret", "data": {"token": base64.b64encode(token.encode()).decode()}},
                                 indent=1).encode())
    assert scan_bytes(f"kind: Secret\nstringData:\n  token: {token[4:]}\n".encode())
    assert not scan_bytes(b"kind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: debug\n")
    assert not scan_bytes(b"kind: Secret\nmetadata:\n  name: regcred\n  namespace: team\n")
    assert not scan_bytes(b"kind: Secret\nmetadata:\n  name: x\ndata:\n  token: {{ .Values.token | b64enc }}\n")


# -- settings files planted by someone else ----------------------------------------------------


def _planted(shared, name, text):
    path = shared / name
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    os.chown(path, 4242, 4242)
    return path


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_a_settings_file_another_user_planted_in_a_shared_directory_is_not_read(tmp_path):
    from fairing.settings import resolve

    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: anyone may create files in it
    _planted(shared, ".git", None)  # makes the shared directory look like the project's root
    planted = _planted(shared, "fairing.toml", 'registry = "attacker.example/stolen"\n'
                                               'insecure_registries = ["attacker.example"]\n')
    proj = shared / "proj"
    proj.mkdir()
    (proj / "train.py").write_text("print(1)\n")
    settings = resolve(cwd=proj, environ={"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert str(planted) not in settings.files and settings.values().get("registry") != "attacker.example/stolen"
    # the user's own file in the same place is read as before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".git").mkdir()
    (mine / "fairing.toml").write_text('registry = "me.example/team"\n')
    (mine / "proj").mkdir()
    settings = resolve(cwd=mine / "proj", environ={"HOME": str(tmp_path / "home"),
                                                   "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert settings.values().get("registry") == "me.example/team"


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_a_planted_settings_file_in_the_working_directory_itself_is_a_typed_refusal(tmp_path):
    from fairing.errors import ConfigurationError
    from fairing.settings import resolve

    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    planted = _planted(shared, "fairing.toml", 'registry = "attacker.example/stolen"\n')
    with pytest.raises(ConfigurationError) as err:
        resolve(cwd=shared, environ={"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert str(planted) in str(err.value) and "another user" in str(err.value)


# -- shell escapes the converter cannot see: the job's shell refuses them ---------------------------

_HIDDEN_SHELL = {
    "globals": "globals()['get_ipython']().system('echo PWNED > pwned')",
    "builtins dict": "import builtins\nvars(builtins).get('get_ipython', get_ipython)().system('echo PWNED > pwned')",
    "eval": "eval('get_' + 'ipython')().getoutput('echo PWNED > pwned')",
    "walrus": "(ip := get_ipython()).system('echo PWNED > pwned')",
    "tuple": "_, ip = 1, get_ipython()\nip.system('echo PWNED > pwned')",
    "list": "shells = [get_ipython()]\nshells[0].run_cell_magic('bash', '', 'echo PWNED > pwned')",
    "lambda": "shell = lambda: get_ipython()\nshell().run_line_magic('sx', 'echo PWNED > pwned')",
    "class": "type(get_ipython()).system(get_ipython(), 'echo PWNED > pwned')",
}


@pytest.mark.parametrize("name", sorted(_HIDDEN_SHELL))
def test_a_shell_escape_the_converter_lets_through_is_refused_by_the_jobs_shell(name, tmp_path, monkeypatch):
    """The converter follows plain aliases only (these pass it); the job's shell is the barrier:
    the converted script, run against it as the job runs it, starts no shell."""
    from fairing.preprocessors.notebook import convert_notebook
    from fairing.runtime import shell

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(_HIDDEN_SHELL[name])]
    converted = convert_notebook(nb, base_dir=tmp_path)  # not refused here: documented as the job's to refuse
    script = converted.script.replace("from fairing_runtime.shell import", "from fairing.runtime.shell import")
    monkeypatch.chdir(tmp_path)
    saved = dict(shell._STATE)
    shell.configure(allow_shell=False, job_dir=tmp_path)
    try:
        with pytest.raises(shell.ShellNotAllowed):
            exec(compile(script, "<job>", "exec"), {"__name__": "__main__"})
    finally:
        shell._STATE.update(saved)
    assert not (tmp_path / "pwned").exists()


# -- a file changed between the scan and the tar ---------------------------------------------------


def test_a_file_changed_after_the_scan_never_ships_unscanned(proj):
    (proj / "notes.txt").write_text("nothing here\n")
    ctx = PythonPreprocessor(proj / "train.py", input_files=["notes.txt"], requirements=[]).context()
    token = _github()
    (proj / "notes.txt").write_text(f"token {token}\n")
    _refused(ctx.tar_bytes, token, "notes.txt")  # scanned again when it is packed, and refused
    _refused(lambda: ctx.materialize(proj.parent / "out"), token, "notes.txt")  # the local backend's copy too
    assert not (proj.parent / "out" / "notes.txt").exists()
    (proj / "notes.txt").write_text("clean again\n")
    assert b"clean again" in ctx.tar_bytes()  # a change without a secret packs as it is now


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_settings_file_that_is_not_utf8_is_a_typed_error_naming_it(tmp_path, encoding):
    from fairing.errors import ConfigurationError
    from fairing.settings import resolve

    (tmp_path / ".git").mkdir()
    (tmp_path / "fairing.toml").write_bytes('registry = "r\u00e9g.example/team"\n'.encode(encoding))
    with pytest.raises(ConfigurationError) as err:
        resolve(cwd=tmp_path, environ={"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert str(tmp_path / "fairing.toml") in str(err.value) and "UTF-8" in str(err.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_a_requirements_file_pip_reads_is_read_and_scanned(proj, encoding):
    # PowerShell 5: pip freeze > requirements.txt writes UTF-16 with a BOM; pip reads it by the BOM
    password = "pw" + uuid.uuid4().hex
    (proj / "requirements.txt").write_bytes(f"six\n--index-url https://ci:{password}@pypi.example/simple\n"
                                            "numpy\n".encode(encoding))
    ctx = PythonPreprocessor(proj / "train.py").context()
    assert ctx.requirements == ("six", "numpy") and password not in ctx.requirements_txt().decode()
    token = _github()
    (proj / "requirements.txt").write_bytes(f"six\n--find-links https://me:{token}@files.example/w\n".encode(encoding))
    _refused(lambda: PythonPreprocessor(proj / "train.py").context(), token, "requirements.txt (requirements)")


def test_a_requirements_file_that_is_not_text_is_a_typed_error(proj):
    from fairing.errors import ConfigurationError

    (proj / "requirements.txt").write_bytes(b"six\n\xff\xfe\xfd\n")
    with pytest.raises(ConfigurationError) as err:
        PythonPreprocessor(proj / "train.py").context()
    assert "requirements.txt" in str(err.value)


def test_a_sparse_gigabyte_is_scanned_in_seconds_and_a_token_after_it_is_found(tmp_path):
    token = _github()
    path = tmp_path / "weights.bin"
    with open(path, "wb") as fh:
        fh.write(b"header\n")
        fh.truncate(1 << 30)  # a hole of 1 GiB: no disk used
        fh.seek(0, os.SEEK_END)
        fh.write(f"\ntoken={token}\n".encode())
    started = time.process_time()  # CPU time: a loaded machine (6 xdist workers) does not inflate it
    found = scan(path)
    assert time.process_time() - started < 10  # it took about 35 s of CPU before holes were skipped
    assert [f.kind for f in found] == ["a GitHub token"] and found[0].line == 3


# -- a token quoted back in an error message -----------------------------------------------------


def _notebook_with(proj, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    path = proj / f"n{uuid.uuid4().hex[:8]}.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("source", [
    '!curl -H "Authorization: token {tok}" https://api.github.com/user',
    "x = {tok} +",
    "%pip install git+https://{tok}@github.com/org/repo",
    "%%writefile ../{tok}.txt\nx",
    "%unknownmagic {tok}",
    "getattr(get_ipython(), '{tok}')",
])
def test_a_refused_notebook_line_is_quoted_without_its_token(proj, source):
    token = _github()
    path = _notebook_with(proj, source.format(tok=token))
    with pytest.raises(FairingError) as err:
        NotebookPreprocessor(path, requirements=[]).context()
    assert token not in str(err.value) and token not in repr(err.value) and "Cell 1, line 1" in str(err.value)
    assert "ghp_***" in str(err.value)


@pytest.mark.parametrize("line", ["GITHUB_TOKEN={tok}", "pkg=={tok}"])
def test_an_invalid_requirement_line_is_quoted_without_its_token(proj, line):
    token = _github()
    (proj / "requirements.txt").write_text("numpy\n" + line.format(tok=token) + "\n")
    for make in (lambda: PythonPreprocessor(proj / "train.py").context(),
                 lambda: PythonPreprocessor(proj / "train.py", requirements=[line.format(tok=token)]).context()):
        with pytest.raises(FairingError) as err:
            make()
        assert token not in str(err.value) and "requirement" in str(err.value)
