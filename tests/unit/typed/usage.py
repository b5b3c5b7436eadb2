"""How a user's typed code calls fairing: checked with ``mypy --strict`` by
tests/unit/test_typed_api.py (never imported by the suite). ``assert_type`` fails the
check when fairing's annotations lose a type; a ``# type: ignore[...]`` that is not
needed fails it too (``--strict`` warns of unused ignores), so the wrong calls below
prove the checker sees the decorated function's parameters."""

from __future__ import annotations

from typing_extensions import assert_type

import fairing
from fairing import config


@fairing.train(backend="local", timeout=600, cpu="2", memory="4Gi", gpus=0)
def fit(alpha: float, *, epochs: int = 3) -> dict[str, float]:
    return {"score": alpha * epochs}


@fairing.train
def plain(x: int) -> str:
    return str(x)


assert_type(fit(0.1, epochs=2), dict[str, float])
assert_type(fit.local(0.5), dict[str, float])
assert_type(fit.map([0.1, 0.2]), list[dict[str, float]])
assert_type(plain(3), str)
handle: fairing.Handle = fit.submit(0.1)

fit("a lot")  # type: ignore[arg-type]
fit(0.1, epoch=2)  # type: ignore[call-arg]
plain(3).bit_length()  # type: ignore[attr-defined]


def predict(rows: list[list[float]], threshold: float = 0.5) -> list[int]:
    return [int(sum(r) > threshold) for r in rows]


remote = config.fn(predict)
assert_type(remote([[1.0]], threshold=0.2), list[int])
remote("rows")  # type: ignore[arg-type]

job = fairing.TrainJob("train.py", backend="kubernetes", deployer="trainjob", cpu="500m", memory="1Gi", gpus=1)
started: fairing.Handle = job.submit()
version: str = fairing.__version__
