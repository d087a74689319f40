"""Run a module as `python -m` does, but halt it for good where it first prints a chosen text.

    python tests/support/halting.py TEXT FLAG MODULE [ARGS...]

A kill test must kill a job at a known point. Polling the job's log and killing when a line shows
up races the job: it runs on between the line and the kill, and on a busy machine it can finish the
very stage the test means to interrupt. Under this wrapper the job stops inside the write of that
text to its stdout or stderr (where lth's log records and Keras' "Epoch n/E" lines go): it writes
FLAG, then waits until it is killed. What the job did before the text is done; nothing after it ran.

Only the standard library is used, so the job imports exactly what `python -m MODULE` would.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

HALT_LIMIT_S = 900  # a halted job nobody kills exits by itself (a test that died must not leave it forever)
HALTED_EXIT = 86  # its exit status then, so the test can tell it from a crash


class HaltingStream:
    """A text stream that forwards everything to `stream` and halts the process after writing `text`."""

    def __init__(self, stream: TextIO, text: str, flag: Path, halt: threading.Lock) -> None:
        self._stream, self._text, self._flag, self._halt = stream, text, flag, halt
        self._tail = ""  # the end of what was written, so a text split over two writes is still seen

    def write(self, data: str) -> int:
        """Write `data`; if the text has now been written, flush, write the flag and block."""
        written = self._stream.write(data)
        self._tail = (self._tail + data)[-(len(self._text) + len(data)):]
        if self._text in self._tail:
            self._stream.flush()  # the test reads the log: the text itself must be in it
            with self._halt:  # stdout and stderr share one halt, so only one writes the flag
                temporary = self._flag.with_name(self._flag.name + ".tmp")
                temporary.write_text(f"{os.getpid()}\n")
                os.replace(temporary, self._flag)  # the test never reads a half-written flag
                if not threading.Event().wait(HALT_LIMIT_S):
                    os._exit(HALTED_EXIT)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # flush, fileno, isatty, encoding...: the real stream's


def main(argv: list[str]) -> None:
    """Install the halting streams, then run MODULE with ARGS as its command line."""
    text, flag, module, *args = argv
    halt = threading.Lock()
    sys.stdout = HaltingStream(sys.stdout, text, Path(flag), halt)  # type: ignore[assignment]
    sys.stderr = HaltingStream(sys.stderr, text, Path(flag), halt)  # type: ignore[assignment]
    sys.path[0] = os.getcwd()  # as under `python -m`: the working directory, not this file's folder
    sys.argv = [module, *args]  # run_module puts the module's file name in argv[0]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
