"""The random active path (RAP) model of deep networks with diluted binary weights.

SPEC section 6, paper 001.  Main entry points:

- :class:`RAPModel` -- a random instance as a factor graph (flat arrays);
- :func:`run_bp` -- replica-symmetric belief propagation, Bethe free energy;
- :func:`run_mc`, :func:`anneal` -- numba Monte Carlo (quench, annealing);
- :func:`exact_enumeration` -- exact thermodynamics of tiny instances;
- :func:`scan_phase` -- the phase diagram under dilution (Figs. 3-4);
- :func:`bp_temperature_scan`, :func:`cooling_study`, :func:`cooling_table` --
  BP stability against temperature and annealing against cooling rate (Fig. 5);
  :func:`anneal_study` -- both as one run (``deepglass rap anneal``);
- :func:`student_activations` -- activation probabilities of a trained student
  (Fig. 2); :func:`student_study` -- the same as a run (``deepglass rap student``).

:func:`scan_phase`, :func:`anneal_study` and :func:`student_study` are the runs
of the ``deepglass rap`` commands: units on :func:`deepglass.runner.run_experiment`
(in this process or on Ray, same tables), and with ``run=`` the run directory
(tables, figures, ``report.md``, ``summary.json``).  Figures:
:mod:`deepglass.rap.figures`.
"""

from .bp import BPResult, bethe_observables, paramagnetic, run_bp
from .exact import exact_enumeration
from .annealing import AnnealResult, anneal, beta_schedule
from .mc import MCResult, run_mc, thermodynamic_integration
from .model import RAPModel, check_parameters, degree_law, expected_factors, path_probability
from .phase import PhaseConfig, PhaseResult, find_transitions, p_grid, scan_phase
from .stability import (AnnealConfig, AnnealStudy, anneal_study, bp_temperature_scan,
                        cooling_study, cooling_table)

__all__ = ["RAPModel", "check_parameters", "expected_factors", "path_probability", "degree_law",
           "p_grid", "bp_temperature_scan", "cooling_study", "cooling_table",
           "BPResult", "run_bp", "bethe_observables", "paramagnetic",
           "exact_enumeration", "MCResult", "AnnealResult", "run_mc", "anneal",
           "beta_schedule", "thermodynamic_integration", "PhaseConfig", "PhaseResult",
           "scan_phase", "find_transitions", "AnnealConfig", "AnnealStudy", "anneal_study",
           "student_activations", "student_study"]


def __getattr__(name):
    if name in ("student_activations", "student_study"):   # torch: loaded on demand
        from . import student

        return getattr(student, name)
    raise AttributeError(f"module 'deepglass.rap' has no attribute {name!r}")
