"""bayes_prune: the pruning scaling law of Rosenfeld et al. (ICML 2021) as a Bayesian,
predictive instrument.

Modules: ``law`` (the law, written once), ``grid`` (the error-grid contract), ``synthetic``
(grids drawn from known coefficients), ``lsq`` (the paper's least-squares fit), ``cli``.
``Recorder`` and ``imp_loop`` (:mod:`bayes_prune.recorder`) record the IMP runs of a user's own
training code into a store.
"""

__version__ = "0.1.0"

__all__ = ["Recorder", "imp_loop"]


def __getattr__(name: str):
    # Recorder and imp_loop for users' own training loops, loaded on first use so that
    # `import bayes_prune` stays light (the query path imports neither torch nor pymc).
    if name in __all__:
        from . import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'bayes_prune' has no attribute {name!r}")
