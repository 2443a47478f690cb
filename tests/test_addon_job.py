"""The panel's job state machine (pure Python)."""
import pytest

from gen3dface.blender_addon.core.job import (STAGE_ORDER, STAGE_WEIGHTS, JobState, JobTracker,
                                              TransitionError)


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def started():
    clock = Clock()
    t = JobTracker(clock=clock)
    t.start()
    return t, clock


def test_happy_path_progress_is_monotonic_and_ends_done():
    t, clock = started()
    assert t.state is JobState.CONNECTING
    t.accepted("job-1", 2)
    assert t.view().label == "Queued (position 2)"
    seen = []
    for stage in ("decode", "face", "fit", "generate", "reconstruct", "texture", "export"):
        for f in (0.0, 0.5, 1.0):
            t.progress(stage, f, f"{stage} {f}")
            seen.append(t.overall_fraction())
    assert seen == sorted(seen)
    assert t.view().label == "Writing the GLB"
    t.result_arrived()
    assert t.state is JobState.IMPORTING
    clock.t += 3.0
    t.imported(["Head", "EyeLeft"])
    v = t.view()
    assert v.state is JobState.DONE and v.fraction == 1.0 and v.elapsed_s == pytest.approx(3.0)
    assert t.result_objects == ("Head", "EyeLeft")


def test_stage_weights_sum_to_one_and_order_matches():
    assert sum(STAGE_WEIGHTS.values()) == pytest.approx(1.0)
    assert STAGE_ORDER[:8] == ("queue", "decode", "face", "fit", "generate", "reconstruct", "texture",
                               "export")


def test_progress_within_a_stage_never_goes_back():
    t, _ = started()
    t.progress("fit", 0.6)
    t.progress("fit", 0.2)
    assert t.stage_fraction == 0.6


def test_error_shows_backend_message_and_advice_and_is_final():
    t, _ = started()
    t.progress("face", 0.1)
    t.failed("NO_FACE", "no face was found in the photo")
    v = t.view()
    assert v.state is JobState.FAILED
    assert v.error.message == "no face was found in the photo"
    assert "one face" in v.error.advice
    t.progress("fit", 0.5)          # late events change nothing
    t.result_arrived()
    assert t.state is JobState.FAILED


def test_cancel_then_late_result_ends_cancelled_without_import():
    t, _ = started()
    t.progress("generate", 0.3)
    assert t.cancel_requested() is True
    assert t.cancel_requested() is False          # only one cancel goes out
    assert t.state is JobState.CANCELLING
    t.result_arrived()
    assert t.state is JobState.CANCELLED
    with pytest.raises(TransitionError):
        t.imported(["x"])


def test_cancel_during_import_is_refused():
    t, _ = started()
    t.result_arrived()
    assert t.cancel_requested() is False
    assert t.state is JobState.IMPORTING


def test_cannot_start_twice_but_can_restart_after_the_end():
    t, _ = started()
    with pytest.raises(TransitionError):
        t.start()
    t.failed("CLIENT_UNREACHABLE", "no answer")
    t.start()
    assert t.state is JobState.CONNECTING and t.error is None


def test_previews_kept_latest_per_name_until_final():
    t, _ = started()
    t.preview("view_0", b"a")
    t.preview("view_0", b"b")
    t.preview("view_1", b"c")
    assert t.previews == {"view_0": b"b", "view_1": b"c"}
    assert t.view().previews == ("view_0", "view_1")


def test_unknown_and_queue_stages_do_not_jump_the_bar():
    t, _ = started()
    t.progress("queue", 0.5)
    assert t.overall_fraction() == 0.0
    t.progress("fit", 1.0)
    f = t.overall_fraction()
    assert 0.1 < f < 0.3
    t.progress("some_new_stage", 0.5)          # SPEC: clients must accept unknown stages
    assert t.overall_fraction() == f
    assert t.view().label == "Some_new_stage"
