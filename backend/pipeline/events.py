"""Moved: the stage contracts (ProgressSink, CancelToken, PipelineError, ...) live in
backend/contracts.py, which depends on nothing. This name is kept for code written before
the move; new code imports `gen3dface.backend.contracts`."""
from ..contracts import (CallbackSink, CancelToken, JobCancelled, NullSink,  # noqa: F401
                         PipelineError, ProgressSink)
