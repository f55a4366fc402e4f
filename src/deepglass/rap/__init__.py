"""The random active path (RAP) model of deep networks with diluted binary weights.

SPEC section 6, paper 001.  Main entry points:

- :class:`RAPModel` -- a random instance as a factor graph (flat arrays);
- :func:`run_bp` -- replica-symmetric belief propagation, Bethe free energy;
- :func:`run_mc`, :func:`anneal` -- numba Monte Carlo (quench, annealing);
- :func:`exact_enumeration` -- exact thermodynamics of tiny instances;
- :func:`scan_phase` -- the phase diagram under dilution (Figs. 3-4);
- :func:`bp_temperature_scan`, :func:`cooling_study`, :func:`cooling_table` --
  BP stability against temperature and annealing against cooling rate (Fig. 5);
- :func:`student_activations` -- activation probabilities of a trained student (Fig. 2).
"""

from .bp import BPResult, bethe_observables, paramagnetic, run_bp
from .exact import exact_enumeration
from .mc import AnnealResult, MCResult, anneal, beta_schedule, run_mc, thermodynamic_integration
from .model import RAPModel, check_parameters, degree_law, expected_factors, path_probability
from .phase import PhaseConfig, PhaseResult, find_transitions, p_grid, scan_phase
from .stability import bp_temperature_scan, cooling_study, cooling_table

__all__ = ["RAPModel", "check_parameters", "expected_factors", "path_probability", "degree_law",
           "p_grid", "bp_temperature_scan", "cooling_study", "cooling_table",
           "BPResult", "run_bp", "bethe_observables", "paramagnetic",
           "exact_enumeration", "MCResult", "AnnealResult", "run_mc", "anneal",
           "beta_schedule", "thermodynamic_integration", "PhaseConfig", "PhaseResult",
           "scan_phase", "find_transitions", "student_activations"]


def __getattr__(name):
    if name == "student_activations":      # imports torch: load on demand
        from .student import student_activations

        return student_activations
    raise AttributeError(f"module 'deepglass.rap' has no attribute {name!r}")
