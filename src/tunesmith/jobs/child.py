"""One fine-tuning job's pipeline, in a process of its own: `python -m tunesmith.jobs.child CONFIG`.

The worker (jobs/worker.py) starts it so that a job's memory, threads and crashes stay out of the worker;
it runs `tunesmith.pipeline.run_pipeline`, the same pipeline `tunesmith run` and `tunesmith.run()` run,
and writes its events to standard output as plain lines (the job's run.log). Exit status: 0 registered,
1 a blocking gate failed, 2 a problem the job's owner can fix (the line starting "error:" says which),
3 anything else.
"""

from __future__ import annotations

import sys
from typing import Any


def log_event(event: Any) -> None:
    """One pipeline event as a plain line of the job's log."""
    kind, data = event.kind, event.data
    if kind == "plan":
        line = "plan: " + ", ".join(f"{stage} {what}" for stage, what in data.items())
    elif kind == "stage":
        line = f"stage: {event.stage}" + (" (resuming from the last complete checkpoint)" if data == "resuming" else "")
    elif kind == "checked":
        line = f"data: {data.result.valid} valid records, {data.result.rejected} rejected"
    elif kind == "prepared":
        line = f"prepared: {data['train']['windows']} training windows of {data['max_length']} tokens"
    elif kind == "fit":
        line = "chosen: " + ", ".join(f"{c['setting']}={c['value']}" for c in data.get("choices", []))
    elif kind == "trained":
        line = f"trained: {data.metadata.get('steps')} steps"
    elif kind == "gates":
        line = "gates: " + "; ".join(
            f"{g.name} {'pass' if g.passed else 'not measured' if g.passed is None else 'FAIL'}" for g in data
        )
    elif kind in ("registered", "unchanged"):
        line = f"registered: {data.name} v{data.version}"
    else:
        return
    print(line, flush=True)


def main(argv: list[str]) -> int:
    from tunesmith.errors import TunesmithError
    from tunesmith.pipeline import load, run_pipeline

    try:
        result = run_pipeline(load(argv[0]), on_event=log_event)
    except TunesmithError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    return 0 if result.passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # the traceback stays in the log for the operator; the line above it says what
        import traceback

        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(3)
