"""scikit-learn's estimator checks on fastnn.Perceptron (skipped where sklearn is absent)."""

import pytest

pytest.importorskip("sklearn", reason="the estimator checks come from scikit-learn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn.perceptron import Perceptron  # noqa: E402

EXPECTED_FAILED_CHECKS = {
    # scikit-learn marks the same two checks as expected failures for its own Perceptron:
    # an online perceptron weighting a sample by 2 is not the same as seeing it twice.
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight is not equivalent to removing/repeating samples (as sklearn's)."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "sample_weight is not equivalent to removing/repeating samples (as sklearn's)."
    ),
    # A noisy threshold test (share of class 0 > 0.87 on overlapping blobs) whose outcome
    # depends on the random epoch orders. fastnn draws one order per epoch for all classes
    # from numpy; sklearn shuffles each one-vs-rest problem with its own C generator. With
    # shuffle=False both give 1.0; with random_state=0 fastnn's 3-class run gives 0.78.
    "check_class_weight_classifiers": (
        "noisy check that depends on the epoch orders, which differ from sklearn's."
    ),
}


def _expected_failed_checks(estimator):
    if estimator.shuffle:
        return EXPECTED_FAILED_CHECKS
    return {name: reason for name, reason in EXPECTED_FAILED_CHECKS.items()
            if name != "check_class_weight_classifiers"}


@parametrize_with_checks(
    [Perceptron(), Perceptron(penalty="elasticnet", shuffle=False)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
