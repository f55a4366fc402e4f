"""The units of a frustration-vs-nulls experiment (SPEC §3; paper 000, Fig. 2)
and their seeds: real replicas in chunks, null draws in groups, each unit's
identity fixing its random streams, whatever else runs."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..store import RunDir

__all__ = ["FrustrationUnit", "unit_seed", "plan_units", "stored_units", "KIND", "UNIT_TABLE"]

#: the run kind in a run directory
KIND = "frustration"
#: the unit table (``units/frustration/runs/``)
UNIT_TABLE = "runs"


# ---------------------------------------------------------------------------------
# units and seeds
@dataclass(frozen=True)
class FrustrationUnit:
    """One unit of work: ``kind`` ("real" or a null), its (first) instance, its
    starts, and for nulls how many consecutive instances (draws) it solves
    together."""

    kind: str
    instance: int
    starts: tuple[int, ...]
    draws: int = 1

    @property
    def id(self) -> str:
        uid = f"{self.kind}-{self.instance:05d}-{self.starts[0]:05d}"
        return uid if self.draws == 1 else f"{uid}-x{self.draws}"


def unit_seed(seed: int, kind: str, instance: int, role: int = 0) -> int:
    """A 63-bit seed for (``seed``, ``kind``, ``instance``, ``role``).

    ``role`` 0 seeds a null model's weights, ``1 + s`` the start gauge ``s``.
    A :class:`numpy.random.SeedSequence` with spawn key ``(crc32(kind),
    instance, role)``: independent streams that depend on the unit's identity
    only, not on which other units run or in what order.
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(kind.encode()), int(instance),
                                                      int(role)))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def plan_units(replicas: int, nulls: Sequence[str], null_instances: int, starts_per_null: int,
               replicas_per_unit: int | None = None, draws_per_unit: int = 1,
               stored: Iterable[str] = ()) -> list[FrustrationUnit]:
    """The units of an experiment: real replicas in chunks, then the null
    instances in groups of ``draws_per_unit`` (each with all its starts).

    ``stored``: ids of null units a run directory already holds.  Their
    groups of draws are kept, and only the draws between them are grouped
    anew, so a run resumed with another batch size (``draws_per_unit`` follows
    the free memory by default) recomputes no finished draw: a draw's numbers
    do not depend on the draws batched with it."""
    rpu = int(replicas_per_unit or replicas)
    dpu = max(1, int(draws_per_unit))
    n = int(null_instances)
    starts = tuple(range(int(starts_per_null)))
    units = [FrustrationUnit("real", 0, tuple(range(a, min(a + rpu, replicas))))
             for a in range(0, int(replicas), rpu)]
    held = [m.groups() for m in map(_NULL_ID.fullmatch, stored) if m]
    for kind in nulls:
        done = {int(i): int(d or 1) for k, i, s, d in held
                if k == kind and int(s) == 0 and int(i) + int(d or 1) <= n}
        i = 0
        while i < n:
            # a stored group, else a new one up to the next stored one
            d = done.get(i) or min([dpu, n - i] + [j - i for j in done if j > i])
            units.append(FrustrationUnit(kind, i, starts, d))
            i += d
    return units


#: a null unit's id (:attr:`FrustrationUnit.id`): kind, first draw, first start, draws
_NULL_ID = re.compile(r"(.+)-(\d{5,})-(\d{5,})(?:-x(\d+))?")


def stored_units(run) -> list[str]:
    """Ids of the unit files in ``run``'s frustration table (a planning hint:
    the runner checks each before it skips a unit)."""
    if run is None:
        return []
    path = Path(run.path if isinstance(run, RunDir) else run) / "units" / KIND / UNIT_TABLE
    return [p.stem for p in path.glob("*.parquet")] if path.is_dir() else []
