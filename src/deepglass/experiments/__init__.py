"""The papers' experiments on a network; each returns tidy tables.

Imported lazily (each experiment pulls in only what it needs):

- :func:`null_model` -- null models N1, N2, N3 of the weights (SPEC §3);
  :data:`NULLS` -- the registry of every null model (:func:`get_null`,
  :func:`resolve_nulls`);
- :func:`frustration_vs_nulls` -- frustration of the real weights vs the nulls
  (paper 000, Fig. 2), resumable in a run directory;
- :func:`active_subgraph` -- active subnetworks of single inputs (SPEC §4);
- :func:`near_monotonicity` -- the perturbation test along the gauge (SPEC §5);
  :func:`monotonicity_experiment` -- the protocol against the nulls, on the runner.
"""

from __future__ import annotations

from .._lazy import lazy_dir, lazy_getattr

# public name -> submodule that defines it
_LAZY = {
    "null_model": "nulls",
    "NULL_KINDS": "nulls",
    "NULLS": "nulls",
    "get_null": "nulls",
    "resolve_nulls": "nulls",
    "frustration_vs_nulls": "frustration",
    "NullComparison": "frustration_stats",
    "active_subgraph": "active",
    "near_monotonicity": "alignment",
    "monotonicity_experiment": "monotonicity",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
__dir__ = lazy_dir(__name__, _LAZY)
