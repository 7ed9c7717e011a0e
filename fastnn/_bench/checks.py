"""The same-work check: did an implementation follow the reference trajectory?

Every runner starts from the same weights and sees the samples in the same order with the
same optimiser, so its per-epoch curve (mean training loss, or the perceptron's weight
norm) must match the NumPy reference's at the epochs both ran, to rounding. A fast run
that skipped work, or trained another model, fails this check, whatever its speed.

The reference is the NumPy backend; when a run shares no epoch with it (the reference is
timed on fewer epochs, and scikit-learn's ``Perceptron.fit`` reports only its last epoch),
the Cython run, itself checked against the reference, stands in, then the Numba run.
"""

import numpy as np

from .runners import RUNNERS

# Relative tolerance on the compared value. float32 trajectories drift apart by rounding
# over many online steps; a different model or skipped work is off by far more.
TOLERANCE = {"float64": 1e-6, "float32": 2e-3}
REFERENCES = ("numpy", "cython", "numba")


def _matching_epoch(curve, reference_curve, reference_converged_at):
    """Latest epoch of ``curve`` whose reference value is known, and that value."""
    for epoch in sorted(curve, reverse=True):
        if epoch in reference_curve:
            return epoch, reference_curve[epoch]
        if reference_converged_at is not None and epoch >= reference_converged_at:
            return epoch, reference_curve[max(reference_curve)]
    return None, None


class Checker:
    """Holds the curves of the reference runs of one session, computing missing ones
    untimed (one thread) on demand."""

    def __init__(self):
        self._curves = {}

    @staticmethod
    def _key(problem, dtype, impl):
        return (problem.workload.id, problem.n_samples, problem.epochs, np.dtype(dtype).name,
                impl)

    def record(self, runner):
        """Keep a finished run's curve, so the reference need not be trained again."""
        key = self._key(runner.problem, runner.dtype, runner.impl)
        self._curves.setdefault(key, (dict(runner.curve), runner.converged_at))

    def reference(self, problem, dtype, impl):
        """``(curve, converged_at)`` of ``impl`` on ``problem``, or None if unavailable."""
        key = self._key(problem, dtype, impl)
        if key not in self._curves:
            runner_class = RUNNERS[impl]
            if runner_class.unavailable(problem.workload):
                self._curves[key] = None
            else:
                runner = runner_class(problem, dtype, threads=1)
                with runner.threads():
                    runner.train()
                self.record(runner)
        return self._curves[key]

    def check(self, runner):
        """The check's record for a finished run (stored in ``extra_info["check"]``)."""
        if runner.impl == "numpy":
            return {"ok": True, "against": "itself (the reference)"}
        tolerance = TOLERANCE[runner.dtype.name]
        for impl in REFERENCES:
            if impl == runner.impl:
                continue
            reference = self.reference(runner.problem, runner.dtype, impl)
            if reference is None:
                continue
            epoch, expected = _matching_epoch(runner.curve, *reference)
            if epoch is None:
                continue
            value = runner.curve[epoch]
            rel_err = abs(value - expected) / max(abs(expected), np.finfo(np.float64).tiny)
            return {"ok": bool(rel_err <= tolerance), "against": impl, "epoch": epoch,
                    "value": value, "reference_value": expected, "rel_err": rel_err,
                    "tolerance": tolerance}
        return {"ok": None, "against": None,
                "reason": "no reference run available that shares an epoch"}
