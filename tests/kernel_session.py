"""A real Jupyter kernel (jupyter_client + ipykernel) to run notebook cells in, and restart."""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Optional

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[1]


class KernelError(AssertionError):
    """A cell raised: ``ename`` and ``evalue`` are the kernel's."""

    def __init__(self, ename: str, evalue: str, traceback: str) -> None:
        self.ename, self.evalue = ename, evalue
        super().__init__(f"{ename}: {evalue}\n{traceback}")


class Kernel:
    """``with Kernel(cwd, env) as k: k.run("print(1)")`` -> the cell's printed output."""

    def __init__(self, cwd: Path, env: Optional[dict] = None) -> None:
        self.cwd = cwd
        self.env = {**os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                    **(env or {})}
        self.manager = KernelManager(kernel_name="python3")
        self.client = None

    def __enter__(self) -> "Kernel":
        self.manager.start_kernel(cwd=str(self.cwd), env=self.env)
        self._connect()
        return self

    def _connect(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=180)  # a loaded machine starts kernels slowly

    def run(self, code: str, timeout: float = 300) -> str:
        """Execute a cell; its text as the notebook would show it at the end: stdout/stderr and
        each display's last text/plain (a display updated in place, such as fairing's job log,
        counts once, with its final content). Raises KernelError when the cell raises."""
        msg_id = self.client.execute(code)
        out: list = []
        displays: dict = {}  # display_id -> its slot in `out`
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the cell did not finish in {timeout} s; output so far: {''.join(out)}")
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("execute_result", "display_data", "update_display_data"):
                text = content["data"].get("text/plain", "") + "\n"
                display_id = content.get("transient", {}).get("display_id")
                if display_id in displays:
                    out[displays[display_id]] = text
                elif kind != "update_display_data":
                    if display_id:
                        displays[display_id] = len(out)
                    out.append(text)
            elif kind == "error":
                raise KernelError(content["ename"], content["evalue"], "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)

    def restart(self) -> None:
        """Restart the kernel as Jupyter's restart button does: a fresh process, nothing kept."""
        self.manager.restart_kernel(now=False)
        self._connect()

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)
