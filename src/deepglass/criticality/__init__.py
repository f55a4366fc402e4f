"""Criticality of weighted nets (SPEC §7, paper 002).

- :mod:`.couplings` -- couplings ``W`` (a matrix, a layer's bipartite block or
  a whole network's ``SignedGraph``) seen through products ``W x``, their top
  eigenpair (Lanczos) and ``T_c``;
- :mod:`.meanfield` -- naive mean-field theory of ``W``: magnetization,
  susceptibility, free energy; :mod:`.curves` -- its curves over temperature
  and field, and the critical exponents;
- :mod:`.powerlaws` -- Clauset-Shalizi-Newman power-law verdicts with the
  ``powerlaw`` package;
- :mod:`.data`, :mod:`.nets`, :mod:`.observables` -- the reference nets of the
  paper, trained on real data, and the four observables collected over
  inference passes;
- :mod:`.meanfield_run`, :mod:`.powerlaw_run` -- the runs behind
  ``deepglass criticality`` (on :mod:`deepglass.runner`; its ``Stages`` chain
  their stages), :mod:`.figures` -- their plots (``ax=`` functions).

Names are imported lazily (torch is only loaded when a net is needed).
"""

from __future__ import annotations

from .._lazy import lazy_dir, lazy_getattr

_LAZY = {
    # mean field
    "Couplings": "couplings", "coupling_operator": "couplings",
    "bipartite_coupling": "couplings", "layer_coupling": "couplings",
    "lambda_max": "couplings", "critical_temperature": "couplings",
    "top_eigenpair": "couplings",
    "free_energy": "meanfield", "MeanFieldSolution": "meanfield",
    "solve_mean_field": "meanfield", "susceptibility": "meanfield",
    "mean_field_curves": "curves", "default_grid": "curves",
    "critical_exponents": "curves", "curie_weiss": "couplings",
    "ordered_pattern": "meanfield",
    # power laws
    "PowerLawVerdict": "powerlaws", "power_law_verdict": "powerlaws",
    "verdict_table": "powerlaws", "plot_power_law": "figures",
    # data, nets, observables
    "load_dataset": "data", "ImageData": "data",
    "REFERENCE_NETS": "nets", "build_reference_net": "nets", "train_reference_net": "nets",
    "collect_observables": "observables", "Observables": "observables",
    "activation_patterns": "observables", "resolve_layers": "observables",
    "observable_samples": "observables",
    # runs
    "MeanFieldConfig": "meanfield_run", "MeanFieldResult": "meanfield_run",
    "run_meanfield": "meanfield_run", "load_matrix": "meanfield_run",
    "PowerLawConfig": "powerlaw_run", "PowerLawResult": "powerlaw_run",
    "run_powerlaw": "powerlaw_run",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
__dir__ = lazy_dir(__name__, _LAZY)
