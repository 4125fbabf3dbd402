"""No module is forgotten by the stage system (issue 32): every petlib module is the code of some stage or
report, a package that only re-exports, or declared neutral with its reason; and what actually runs in a
stage (a trace of every petlib function called) is inside the code the stage is keyed by."""
import sys
import threading

import pytest

from petlib import codegraph, stage_table, stages


def _consumers() -> dict[str, set[str]]:
    out = {m: set() for m in codegraph.module_files()}
    for stage, entry in stages.ENTRY.items():
        for m in codegraph.closure(entry, stop=stages.NEUTRAL | stages.DATA_MODULES) - stages.NEUTRAL - stages.DATA_MODULES:
            out[m].add(stage)
    for nb in stage_table.PLAN:
        for m in codegraph.closure(stage_table.notebook_code(nb), stop=stages.NEUTRAL) - stages.NEUTRAL:
            out[m].add(nb)
    return out


def test_every_module_is_a_stage_s_code_or_neutral_with_its_reason():
    forgotten = [m for m, users in _consumers().items()
                 if not users and m not in stages.NEUTRAL and not codegraph._reexports_only(m)]
    assert not forgotten, f"modules no stage or report is keyed by, and not declared neutral: {forgotten}"
    assert all(stages.NEUTRAL_WHY[m] for m in stages.NEUTRAL)
    assert not set(stages.NEUTRAL) - set(codegraph.module_files()), "neutral names a module that does not exist"


def test_an_edit_to_a_module_makes_stale_exactly_the_stages_that_use_it(monkeypatch):
    """Each module's digest changed in turn: the stages whose code inputs change are those of the table."""
    users = _consumers()
    before = {s: stages.code_inputs(e) for s, e in stages.ENTRY.items()}
    real = codegraph.code_digest
    for m in codegraph.module_files():
        monkeypatch.setattr(codegraph, "code_digest", lambda x, m=m: "edited" if x == m else real(x))
        stale = {s for s, e in stages.ENTRY.items() if stages.code_inputs(e) != before[s]}
        assert stale == users[m] & set(stages.ENTRY), m


def _executed(fn) -> set[str]:
    """The petlib modules whose functions (or module code) ran during fn(), in this process."""
    files = {str(p): m for m, p in codegraph.module_files().items()}
    seen: set[str] = set()

    def prof(frame, event, arg):
        if event == "call":
            m = files.get(frame.f_code.co_filename)
            if m:
                seen.add(m)

    sys.setprofile(prof)
    threading.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return seen


def _unseen(stage: str, ran: set[str]) -> set[str]:
    hashed = stages.code_inputs(stages.ENTRY[stage])
    keyed = {m for m in codegraph.module_files() if codegraph.relpath(m) in hashed}
    return ran - keyed - stages.NEUTRAL - {m for m in ran if codegraph._reexports_only(m)}


@pytest.mark.slow
def test_what_a_training_step_and_validation_run_is_the_training_stage_s_code(make_params, tmp_path):
    from petlib import reproducible, runtime, train

    params = make_params(tmp_path, "train.num_workers=0")
    rt = runtime.setup("cpu", False)
    reproducible.apply(params.reproducible, rt.device)

    def step():
        s = train.build(params, "mnv3", "cat", rt, progress=False)
        x, y = next(iter(s.loader))
        train.train_step(s, x, y, params.train, 0, 0, tmp_path)
        train.validate(s)
        stages.train_check(params, "mnv3", "cat")

    from petlib import data
    data.prepare_species(params, "cat", progress=False)  # 01_data's work, outside the trace
    assert not _unseen("train", _executed(step)), _unseen("train", _executed(step))


@pytest.mark.slow
def test_what_evaluation_runs_is_the_evaluation_stage_s_code(trained_ci):
    from petlib import evaluate

    ran = _executed(lambda: evaluate.evaluate_run(trained_ci, "mnv3", "cat", progress=False))
    assert not _unseen("eval", ran)
