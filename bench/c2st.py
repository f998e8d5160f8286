"""The C2ST score: sbibm's implementation, or a capped variant for smoke runs.

Full runs always use :func:`sbibm.metrics.c2st` (an MLP classifier with two hidden layers
of ``10 * D`` units, trained to convergence, 5-fold cross-validated accuracy), the metric
every published sbibm figure uses. Its training runs up to 10,000 epochs and takes
minutes when the two sets are nearly alike, so ``--smoke`` caps the classifier's epochs
instead; those scores only check the plumbing and are never reported.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor


def c2st(reference: Tensor, draws: Tensor, folds: int, max_iter: int | None = None) -> float:
    """Cross-validated accuracy of a classifier telling ``draws`` from ``reference``.

    Arguments:
        reference: Reference posterior draws ``(N, D)``.
        draws: Draws of the method under test ``(M, D)``.
        folds: Cross-validation folds.
        max_iter: ``None`` for sbibm's own C2ST; otherwise the classifier's epoch cap.

    Returns:
        Accuracy in [0, 1]; 0.5 means indistinguishable.
    """
    if max_iter is None:
        from sbibm.metrics import c2st as sbibm_c2st

        return float(sbibm_c2st(reference, draws, seed=1, n_folds=folds))
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    mean, std = reference.mean(dim=0), reference.std(dim=0)
    features = ((torch.cat([reference, draws]) - mean) / std).numpy()
    labels = np.concatenate([np.zeros(len(reference)), np.ones(len(draws))])
    width = 10 * features.shape[1]
    classifier = MLPClassifier((width, width), max_iter=max_iter, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(
            classifier, features, labels, cv=KFold(folds, shuffle=True, random_state=1)
        )
    return float(np.mean(scores))
