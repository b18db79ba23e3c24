"""Echoes of an abandoned asynchronous checkpoint operation are reported once."""

import re
import subprocess
import sys

# A child process makes the real echoes: objects whose finaliser calls into a closed event
# loop (what TensorStore's callbacks do after Orbax gave up on a restore, reported through
# sys.unraisablehook) and asyncio tasks whose failure nobody retrieved.
ECHOES = """
import asyncio, gc, logging, sys
logging.basicConfig(format="%(levelname)s %(name)s %(message)s")
if sys.argv[1] == "on":
    from sspcab_jax.training.async_errors import report_async_errors_once, suppressed_counts
    report_async_errors_once()
    report_async_errors_once()  # idempotent

loop = asyncio.new_event_loop()
loop.close()

class Callback:
    def __del__(self):
        loop.call_soon_threadsafe(print)

class Unrelated:
    def __del__(self):
        raise ValueError("an unrelated finaliser error")

for _ in range(50):
    Callback()
Unrelated()

async def read(i):
    raise ValueError(f"array {i} is truncated")

tasks_loop = asyncio.new_event_loop()
tasks = [tasks_loop.create_task(read(i)) for i in range(50)]
tasks_loop.run_until_complete(asyncio.sleep(0.01))
tasks_loop.close()
del tasks
gc.collect()
if sys.argv[1] == "on":
    print(suppressed_counts())
"""


def _run(mode):
    proc = subprocess.run(
        [sys.executable, "-c", ECHOES, mode], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr.splitlines()


def test_without_the_helper_every_echo_prints_a_traceback():
    _, err = _run("off")
    assert sum("RuntimeError: Event loop is closed" in line for line in err) == 50
    assert sum("Task exception was never retrieved" in line for line in err) == 50
    assert len(err) > 500


def test_with_the_helper_each_kind_is_one_line_and_other_errors_pass():
    out, err = _run("on")
    assert out.strip() == "{'closed_loop': 50, 'never_retrieved': 50}"
    closed = [line for line in err if "event loop closed" in line]
    assert closed == [
        "WARNING sspcab_jax.training.async_errors a checkpoint read or write was abandoned "
        "after an earlier error (reported separately); its background threads found their "
        "event loop closed. Further such messages are not shown."
    ]
    never = [line for line in err if "never retrieved" in line]
    assert len(never) == 1
    assert re.fullmatch(
        r"ERROR asyncio Task exception was never retrieved in a background task \(ValueError: "
        r"array \d+ is truncated\); further such messages are not shown.",
        never[0],
    )
    assert "Event loop is closed" not in "\n".join(err)
    # An unrelated unraisable error still reaches Python's own hook, traceback and all.
    assert "ValueError: an unrelated finaliser error" in err
    assert any(line.startswith("Exception ignored in: <function Unrelated.__del__") for line in err)
    assert len(err) == 2 + 4  # the two lines above + the unrelated error's report
