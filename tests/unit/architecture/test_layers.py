"""The walls of ARCHITECTURE.md hold: import-linter's contracts (.importlinter), small modules, a short top level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LONGEST_MODULE = 300  # lines; a longer module has more than one job
TOP_LEVEL_MODULES = 8  # lth/ holds its entry points and what a reader must see first; the rest is in packages


def test_every_import_contract_is_kept() -> None:
    linter = Path(sys.executable).parent / "lint-imports"  # import-linter's own command, beside this Python
    done = subprocess.run([str(linter), "--no-cache", "--config", ".importlinter"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_no_module_is_longer_than_300_lines() -> None:
    lengths = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
               for folder in ("lth", "hydra_plugins") for path in (ROOT / folder).rglob("*.py")}
    assert {path: n for path, n in lengths.items() if n > LONGEST_MODULE} == {}


def test_the_top_level_keeps_at_most_eight_modules() -> None:
    modules = sorted(path.name for path in (ROOT / "lth").glob("*.py"))
    assert len(modules) <= TOP_LEVEL_MODULES, modules
