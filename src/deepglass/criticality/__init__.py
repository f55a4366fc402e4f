"""Criticality of weighted nets (SPEC §7, paper 002).

- :mod:`.meanfield` -- naive mean-field theory of couplings ``W`` (a matrix, a
  layer's bipartite block or a whole network's ``SignedGraph``): ``T_c``,
  magnetization, susceptibility, free energy, critical exponents;
- :mod:`.powerlaws` -- Clauset-Shalizi-Newman power-law verdicts with the
  ``powerlaw`` package;
- :mod:`.data`, :mod:`.nets`, :mod:`.observables` -- the reference nets of the
  paper, trained on real data, and the four observables collected over
  inference passes;
- :mod:`.experiment` -- the runs behind ``deepglass criticality``.

Names are imported lazily (torch is only loaded when a net is needed).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_LAZY = {
    # mean field
    "Couplings": "meanfield", "coupling_operator": "meanfield",
    "bipartite_coupling": "meanfield", "layer_coupling": "meanfield",
    "lambda_max": "meanfield", "critical_temperature": "meanfield",
    "free_energy": "meanfield", "MeanFieldSolution": "meanfield",
    "solve_mean_field": "meanfield", "susceptibility": "meanfield",
    "mean_field_curves": "meanfield", "default_grid": "meanfield",
    "critical_exponents": "meanfield", "curie_weiss": "meanfield",
    "ordered_pattern": "meanfield",
    # power laws
    "PowerLawVerdict": "powerlaws", "power_law_verdict": "powerlaws",
    "verdict_table": "powerlaws", "plot_power_law": "powerlaws",
    # data, nets, observables
    "load_dataset": "data", "ImageData": "data",
    "REFERENCE_NETS": "nets", "build_reference_net": "nets", "train_reference_net": "nets",
    "collect_observables": "observables", "Observables": "observables",
    "activation_patterns": "observables", "resolve_layers": "observables",
    "observable_samples": "observables",
    # runs
    "MeanFieldConfig": "experiment", "run_meanfield": "experiment", "load_matrix": "experiment",
    "PowerLawConfig": "experiment", "run_powerlaw": "experiment",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
