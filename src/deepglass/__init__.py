"""deepglass: the statistical physics of deep neural networks.

The main objects are imported lazily so that ``import deepglass`` stays cheap:

- :class:`deepglass.graph.SignedGraph` -- the neuron-level signed DAG of a network;
- :func:`deepglass.frustration` -- its frustration (Ising ground state), a
  :class:`deepglass.FrustrationResult`;
- :func:`deepglass.null_model` -- a null model (N1, N2, N3) of a network or graph;
- :func:`deepglass.active_subgraph` -- the active subnetworks of inputs;
- :func:`deepglass.near_monotonicity` -- the near-monotonicity test along a gauge;
- :mod:`deepglass.experiments` -- the papers' protocols (nulls, active, monotonicity);
- :mod:`deepglass.rap` -- the random active path model;
- :mod:`deepglass.criticality` -- mean-field theory and power-law searches.

Errors a user can fix are :class:`deepglass.DeepglassError` (one line each).
"""

from __future__ import annotations

from ._lazy import lazy_dir, lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "SignedGraph": "deepglass.graph",
    "frustration": "deepglass.solve",
    "FrustrationResult": "deepglass.solve",
    "null_model": "deepglass.experiments.nulls",
    "active_subgraph": "deepglass.experiments.active",
    "near_monotonicity": "deepglass.experiments.monotonicity",
    "DeepglassError": "deepglass.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


__getattr__ = lazy_getattr(__name__, _LAZY)
__dir__ = lazy_dir(__name__, _LAZY)
