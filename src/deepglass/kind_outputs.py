"""The files each kind of run writes beside its units (tables, figures, arrays).

A run opened on a directory holding one of these names that it does not own
refuses at once, before any computation (:meth:`deepglass.store.RunDir`),
not when it comes to write the file after the computation.
"""

from __future__ import annotations

__all__ = ["KIND_OUTPUTS", "kind_outputs"]

#: files each kind writes besides its units (``reports/<kind>.*`` too): a file of
#: these names that the run does not own is refused when the run is opened, not
#: after the computation
KIND_OUTPUTS = {
    "frustration": ("frustration_runs.parquet", "frustration_stats.parquet",
                    "figures/frustration.png", "arrays/gauge_real.npz"),
    "active": ("active.parquet", "figures/active_delta_x.png", "arrays/gauge_real.npz"),
    "monotonicity": ("monotonicity_trials.parquet", "monotonicity_inputs.parquet",
                     "monotonicity_gamma.parquet", "figures/rho_hist.png",
                     "figures/rho_vs_amplitude.png", "figures/gamma.png",
                     "arrays/gauge_real.npz"),
    "rap-phase": ("points.parquet", "summary.parquet", "transitions.parquet", "degrees.parquet",
                  "figures/pc.png"),
    "rap-anneal": ("annealing.parquet", "annealing_traces.parquet", "temperature_scan.parquet",
                   "annealing_summary.parquet", "figures/stability.png"),
    "rap-student": ("activations.parquet", "figures/activations.png"),
    "criticality-meanfield": ("meanfield_curves_T.parquet", "meanfield_curves_h.parquet",
                              "meanfield_exponents.parquet", "figures/meanfield_T.png",
                              "figures/meanfield_h.png"),
    "criticality-powerlaw": ("powerlaw_verdicts.parquet",),
}



#: kind -> the function of its run's configuration giving the outputs the
#: configuration names (one figure per inverse temperature and a2, per network and
#: checkpoint), in the module that writes them (imported when such a run opens)
_NAMED_BY_CONFIG = {"rap-phase": ("deepglass.rap.phase", "phase_outputs"),
                    "criticality-powerlaw": ("deepglass.criticality.powerlaw_run",
                                             "powerlaw_outputs")}


def kind_outputs(kind: str, config) -> list[str]:
    """The files run ``kind`` of configuration ``config`` writes beside its units."""
    named = ()
    if kind in _NAMED_BY_CONFIG:
        import importlib

        module, function = _NAMED_BY_CONFIG[kind]
        named = getattr(importlib.import_module(module), function)(config)
    return [*KIND_OUTPUTS.get(kind, ()), *named]
