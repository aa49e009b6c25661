"""NNI's multi-trial strategies: NNI proposes samples of the adapter's model space, nasmerc trains them.

NNI's ``RegularizedEvolution``, ``TPE``, ``Random`` and ``PolicyBasedRL`` run their own loop: they freeze
the model space with a sample and submit it to an execution engine, which hands it to the evaluator
and tells the strategy the metric it reports. Here the engine is NNI's ``SequentialExecutionEngine``
(this process, one model at a time, at most ``trials`` models) and the evaluator is
:class:`NasmercTrials`, which trains each sample as nasmerc's own population strategies train a
candidate: through ``ctx.evaluator.score_all`` (the architecture built after seeding with ``seed + n``
for the ``n``-th trial, ``candidate_epochs`` epochs of nasmerc's trainer, the best validation value of
the primary metric), recorded in the run's trial log (one ``trial`` event each, the best so far in
``arch.yaml``). The value goes back to NNI with ``nni.report_final_result``, negated when the metric is
better lower (NNI's strategies maximise). The result is NNI's top model (``list_models``), as
``NasExperiment.export_top_models`` would give it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasmerc import metrics
from nasmerc.errors import NasmercError
from nasmerc.nas.evaluator import CandidateRequest
from nasmerc.nas.nni_format import from_nni
from nasmerc.nas.population import TrialLog, search_result
from nasmerc.nas.strategy import SearchContext, SearchResult
from strategies.nni.space import NasmercModelSpace, quiet

with quiet():
    import nni
    from nni.nas.evaluator import Evaluator
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import SimplifiedModelSpace

if TYPE_CHECKING:
    from strategies.nni import MultiTrial


class NasmercTrials(Evaluator):
    """NNI's evaluator of a multi-trial search: each sample trained by nasmerc (see the module docstring)."""

    def __init__(self, ctx: SearchContext, epochs: int, source: str) -> None:
        self.ctx, self.epochs, self.source = ctx, epochs, source
        self.specs = ctx.space.choices(ctx.fixed)
        self.inactive = ctx.space.inactive(ctx.fixed)
        self.log = TrialLog(ctx.evaluator.metric, ctx.events)
        self.higher = metrics.HIGHER_IS_BETTER[ctx.evaluator.metric]

    def arch(self, sample: dict[str, Any]) -> dict[str, Any]:
        return from_nni({**self.ctx.fixed, **sample}, self.specs, self.inactive, source=self.source)

    def _execute(self, model: Any) -> float:
        """Train the sample of ``model`` (NNI's frozen model space) without building NNI's copy of it."""
        arch = self.arch(dict(model.sample))
        request = CandidateRequest(arch, self.epochs, self.ctx.evaluator.seed + len(self.log.trials))
        result = self.ctx.evaluator.score_all([request])[0]
        self.log.add(arch, result, nni_sample=dict(model.sample))
        best = self.log.best
        if best is not None and self.ctx.best_so_far is not None:
            self.ctx.best_so_far(dict(best["arch"]), {
                "metric": self.log.metric, "best_valid": best["value"], "best_trial": best["trial"],
                "trials_done": len(self.log.trials), "derived_parameters": best["parameters"]})
        reported = result.value if self.higher else -result.value
        nni.report_final_result(float(reported))
        return reported

    def evaluate(self, model: Any) -> Any:
        raise NotImplementedError("NasmercTrials trains samples (see _execute), not NNI's built models")


def search_trials(strategy: "MultiTrial", ctx: SearchContext) -> SearchResult:
    """Run ``strategy``'s NNI multi-trial search of ``ctx.space`` (see the module docstring)."""
    cfg = strategy.config
    name = type(strategy).__name__
    evaluator = NasmercTrials(ctx, cfg.candidate_epochs, source=f"a sample of NNI's strategy ({strategy.name})")
    try:
        with quiet():
            ms = NasmercModelSpace(ctx.space, dict(ctx.fixed), strategy.inputs_as)
            nni_strategy = strategy.nni_strategy(ctx)
            engine = SequentialExecutionEngine(max_model_count=cfg.trials)
            nni_strategy.initialize(SimplifiedModelSpace.from_model(ms, evaluator), engine)
            nni_strategy.run()
            top = next(iter(nni_strategy.list_models(limit=1)), None)
    finally:
        ctx.evaluator.close()
    if top is None or not evaluator.log.trials:
        raise NasmercError(f"strategy {strategy.name!r}: NNI's {name} trained no candidate")
    arch = evaluator.arch(dict(top.sample))
    trial = next((t["trial"] for t in evaluator.log.trials if t["arch"] == arch), None)
    return search_result(ctx.space, ctx.fixed, evaluator.log, trial=trial,
                         nni_strategy=type(nni_strategy).__name__, nni_sample=dict(top.sample))
