"""bayes_prune: the pruning scaling law of Rosenfeld et al. (ICML 2021) as a Bayesian,
predictive instrument.

Modules: ``law`` (the law, written once), ``grid`` (the error-grid contract), ``synthetic``
(grids drawn from known coefficients), ``lsq`` (the paper's least-squares fit), ``cli``.
"""

__version__ = "0.1.0"
