"""Where a results folder stands, in the lines ``aebench run`` ends with: the best configuration on
each dataset (a test against the runners-up) and how the results meet the suite's references.

They are kept beside the results they were computed from (``.standing.json``), keyed by those
results and by aebench's own code: a run with nothing left to do prints them again without
importing scipy to repeat the same tests (issue 31: a rerun with nothing to do in under 3 s), and
any change to the table, its vocabulary, the saved suite or the code that ranks computes them
anew. A folder without a saved vocabulary (an older one, ranked by the metrics installed now) is
never kept: what installed plugins declare is not part of the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aebench.contract.columns import COLUMNS_FILE
from aebench.results.files import write_atomically
from aebench.results.table import PARQUET, SUITE_FILE

MEMO = ".standing.json"
# What the lines are computed from, in the results folder; the vocabulary must be among them
INPUTS = (PARQUET, COLUMNS_FILE, SUITE_FILE)
PACKAGE = Path(__file__).resolve().parents[1]  # aebench's source, the code that ranks


@dataclass(frozen=True)
class Standing:
    best: dict[str, str] = field(default_factory=dict)  # dataset -> its best configuration's line
    reproduction: str = ""  # the references' line; "" where the suite names none


def standing(folder: Path) -> Standing:
    """The folder's standing: the kept one where its key still matches, else computed (and kept,
    where the folder can be written)."""
    folder = Path(folder)
    key = _key(folder)
    kept = _read(folder / MEMO, key) if key else None
    if kept is not None:
        return kept
    found = _computed(folder)
    if key:
        try:
            text = json.dumps({"key": key, **asdict(found)})
            write_atomically(folder / MEMO, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        except OSError:
            pass  # a read-only folder: computed again next time
    return found


def _computed(folder: Path) -> Standing:
    from aebench.plugins.listing import vocabulary_of
    from aebench.results.table import read_results
    from aebench.views.reproduction import summary
    from aebench.views.verdict_words import best_configurations

    table = read_results(folder)
    best = best_configurations(table, vocabulary_of(folder)) if not table.empty else {}
    return Standing(best=best, reproduction=summary(folder))


def _key(folder: Path) -> str | None:
    """A digest of the inputs' bytes and of aebench's source (its content: an install or a checkout
    rewrites modification times); None without a saved vocabulary."""
    if not (folder / COLUMNS_FILE).is_file():
        return None
    digest = hashlib.sha256()
    for name in INPUTS:
        path = folder / name
        digest.update(f"\0{name}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"\0missing")
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _read(path: Path, key: str) -> Standing | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["key"] != key:
            return None
        best, reproduction = saved["best"], saved["reproduction"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, torn or foreign: computed again
    if not (isinstance(best, dict) and isinstance(reproduction, str)):
        return None
    return Standing(best={str(k): str(v) for k, v in best.items()}, reproduction=reproduction)
