"""``cpu=``, ``memory=`` and ``gpus=``: what a job may use, one meaning on every backend.

Values follow Kubernetes' own quantity rules (checked when given, before any build):

- ``cpu``: cores, a number (``2``, ``0.5``) or a quantity (``"500m"``, ``"2"``).
- ``memory``: bytes, an int or a quantity with a decimal (``"4G"`` = 4·10⁹) or binary
  (``"4Gi"`` = 4·2³⁰) suffix. ``"4GB"``, ``"4g"`` or ``"512m"`` (0.512 bytes) are refused,
  naming what was probably meant.
- ``gpus``: a whole number of GPUs, 0 or more.

Each is both the request and the limit: the job is given that much and no more.

========== ======================================= ===================================== ==================================
backend    cpu                                     memory                                gpus
========== ======================================= ===================================== ==================================
kubernetes requests and limits ``cpu``             requests and limits ``memory``        limits ``nvidia.com/gpu``
           of the training container of every kind (Job, TFJob/PyTorchJob replicas, TrainJob nodes, endpoints)
docker     the engine's ``NanoCpus``               ``Memory`` (no swap beyond it)        a GPU ``DeviceRequest`` of that count
local      the process runs on ``ceil(cpu)`` of    the process's address space           ``CUDA_VISIBLE_DEVICES`` names the
           this machine's CPUs (affinity; a        (``RLIMIT_AS``): stricter than a      first ``gpus`` GPUs (none for 0);
           fraction of a core cannot be held)      cgroup's limit, as it counts mapped   nothing more is enforced
                                                   but unused memory too
========== ======================================= ===================================== ==================================

Written here rather than taken from the Kubernetes client: its ``parse_quantity`` accepts
forms the API server refuses (``"1.5.0"`` parts aside, it takes floats as bytes), and the
client is an optional extra that the local and Docker backends do not install.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from typing import Any, Optional, Union

from .errors import ConfigurationError

__all__ = ["Resources", "check_cpu", "check_memory", "check_gpus", "RESOURCE_OPTIONS", "Quantity"]

#: What ``cpu=``/``memory=`` take: a number or a Kubernetes quantity string.
Quantity = Union[str, int, float]

RESOURCE_OPTIONS = ("cpu", "memory", "gpus")

# <quantity> ::= <signedNumber><suffix>; suffix: binarySI | decimalExponent | decimalSI
_QUANTITY = re.compile(r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$", re.ASCII)
#: Kubernetes keeps a quantity in an int64 (bytes, or millicores for CPU): more is refused here, not by the API server.
_MAX = Decimal(2) ** 63 - 1
_SCALE = {None: Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
          "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
          "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
          "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def _parse(text: str) -> Optional[Decimal]:
    m = _QUANTITY.match(text)
    if not m:
        return None
    suffix = m.group("suffix")
    try:
        if suffix not in _SCALE:  # "Ei" is exbibytes; "e3"/"E-2" an exponent
            return Decimal(m.group("num")) * Decimal(10) ** int(suffix[1:])
        return Decimal(m.group("num")) * _SCALE[suffix]
    except (DecimalException, ValueError):  # "1e9999999": beyond Decimal's range
        return None


def _memory_hint(text: str) -> str:
    """What ``text`` probably meant, in Kubernetes' units ("4GB" -> 4G or 4Gi)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtTpPeE])(i?)[bB]?", text, re.ASCII)
    if not m:
        return ""
    num, unit, binary = m.groups()
    decimal = "k" if unit.lower() == "k" else unit.upper()
    binary_unit = ("K" if decimal == "k" else decimal) + "i"
    if binary:
        return f" Did you mean {num}{binary_unit}?"
    return f" Did you mean {num}{decimal} or {num}{binary_unit}?"


def check_cpu(value: Any, *, option: str = "cpu") -> Optional[str]:
    """``value`` as a Kubernetes CPU quantity string (None when not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigurationError(f"{option}= takes cores as a number or a quantity such as 2, 0.5 or '500m', "
                                 f"got {type(value).__name__} {value!r}.")
    text = value.strip() if isinstance(value, str) else repr(value)
    amount = _parse(text)
    if amount is None or amount <= 0 or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigurationError(f"{option}={value!r} is not a CPU quantity: give cores such as 2, 0.5 or '500m' "
                                 "(a positive number, or millicores with 'm').")
    if amount < Decimal("0.001"):
        raise ConfigurationError(f"{option}={value!r} is below one millicore, the smallest CPU Kubernetes can give; "
                                 "give e.g. '100m'.")
    if amount * 1000 > _MAX:
        raise ConfigurationError(f"{option}={value!r} is more CPU than Kubernetes can express (2^63-1 millicores); "
                                 "give the cores the job needs, e.g. 4.")
    return text


def check_memory(value: Any, *, option: str = "memory") -> Optional[str]:
    """``value`` as a Kubernetes memory quantity string (None when not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigurationError(f"{option}= takes bytes as an int or a quantity such as '512Mi' or '4Gi', "
                                 f"got {type(value).__name__} {value!r}.")
    text = value.strip() if isinstance(value, str) else str(value)
    amount = _parse(text)
    if amount is None or text.endswith("m"):
        hint = _memory_hint(text)
        raise ConfigurationError(
            f"{option}={value!r} is not a memory quantity in Kubernetes' units.{hint} Decimal units are k, M, G, T "
            "(4G = 4,000,000,000 bytes), binary ones Ki, Mi, Gi, Ti (4Gi = 4 × 1024³ bytes); 'm' would mean "
            "thousandths of a byte.")
    if amount < 4 * 2 ** 20:
        raise ConfigurationError(f"{option}={value!r} is {amount} bytes, too little for a Python job; give e.g. "
                                 "'512Mi'. (A bare number is bytes.)")
    if amount > _MAX:
        raise ConfigurationError(f"{option}={value!r} is more memory than Kubernetes can express (2^63-1 bytes); "
                                 "give what the job needs, e.g. '16Gi'.")
    return text


def check_gpus(value: Any, *, option: str = "gpus") -> Optional[int]:
    """``value`` as a count of GPUs (None when not given)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{option}= takes a whole number of GPUs, 0 or more, got {value!r}.")
    return value


@dataclass(frozen=True)
class Resources:
    """Checked ``cpu``, ``memory`` and ``gpus`` (None: not given); see the module docstring."""

    cpu: Optional[str] = None
    memory: Optional[str] = None
    gpus: Optional[int] = None

    @classmethod
    def of(cls, cpu: Any = None, memory: Any = None, gpus: Any = None) -> "Resources":
        return cls(check_cpu(cpu), check_memory(memory), check_gpus(gpus))

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.cpu, self.memory, self.gpus))

    @property
    def cores(self) -> Optional[float]:
        return None if self.cpu is None else float(_parse(self.cpu))  # type: ignore[arg-type]

    @property
    def memory_bytes(self) -> Optional[int]:
        return None if self.memory is None else int(_parse(self.memory))  # type: ignore[arg-type]

    def kubernetes(self, *, gpu_resource: str = "nvidia.com/gpu") -> dict:
        """The container ``resources`` these ask for: requests and limits."""
        requests = {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v is not None}
        limits = dict(requests)
        if self.gpus:
            limits[gpu_resource] = str(self.gpus)
        out = {}
        if requests:
            out["requests"] = requests
        if limits:
            out["limits"] = limits
        return out

    def local_cpus(self, available: "set[int]") -> Optional[set]:
        """The CPUs a local job is pinned to: ``ceil(cpu)`` of ``available`` (None: all)."""
        if self.cores is None:
            return None
        n = max(1, math.ceil(self.cores))
        return set(sorted(available)[:n]) if n < len(available) else None
