"""``leadbox train FILE.jsonl``: fit the local model on a business's own labelled leads.

How it decides whether to write, and why that way:

- The input is the JSONL that ``leadbox eval`` reads (``message``, ``category``, optional
  ``subject``/``language``): corrections exported from the console are its natural input.
- The user's rows are split into k stratified folds. For every fold the *new* model is trained on
  the other folds (plus the shipped training data with ``--merge``) and predicts the fold; the
  *current* model (the file at ``classifier.model_path``, else the shipped one) predicts the same
  rows as it is. Both are measured on exactly the same rows, none of which the new model saw.
- It refuses to write when the new model's cross-validated accuracy or spam precision is lower
  than the current model's on those rows (``--force`` overrides): a worse model must not replace
  a better one silently, and a lead wrongly marked spam gets no answer.
- Otherwise it fits on all rows and writes the model atomically (temporary file in the same
  folder, fsync, rename), so a daemon starting meanwhile reads the old file or the new one, never
  half of one. The daemon loads the model at start.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.classifiers.evaluation import LabeledRow
from agent.classifiers.model import (
    SHIPPED_MODEL,
    LocalModel,
    ModelError,
    load_model,
    resolve_model_path,
)
from agent.classifiers.training import (
    DEFAULT_SETTINGS,
    LABELS,
    SHIPPED_TRAINING,
    Figures,
    TrainSettings,
    examples_from,
    fit,
    folds_for,
    load_rows,
    predict,
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Cross-validated figures of the current and the new model on the same rows."""

    before: Figures
    after: Figures
    folds: int

    @property
    def worse(self) -> list[str]:
        out = []
        if self.after.accuracy < self.before.accuracy:
            out.append("accuracy")
        if self.after.spam_precision < self.before.spam_precision:
            out.append("spam precision")
        return out


def compare(
    rows: list[LabeledRow], extra: list[LabeledRow], current: LocalModel, folds: int,
    settings: TrainSettings = DEFAULT_SETTINGS,
) -> Comparison:
    """Figures of ``current`` and of the new recipe (``rows`` + ``extra``) on ``rows``' folds."""
    mine = examples_from(rows, settings)
    shared = examples_from(extra, settings)
    fold_of = folds_for([ex.label for ex in mine], folds)
    before: list[tuple[int, int]] = []
    after: list[tuple[int, int]] = []
    for f in range(folds):
        test = [ex for i, ex in enumerate(mine) if fold_of[i] == f]
        if not test:
            continue
        model = fit([ex for i, ex in enumerate(mine) if fold_of[i] != f] + shared, settings)
        for ex in test:
            before.append((ex.label, predict(current, ex)))
            after.append((ex.label, predict(model, ex)))
    return Comparison(Figures.of(before), Figures.of(after), folds)


def write_atomically(path: Path, model: LocalModel) -> None:
    """Write the model so that readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(model.to_json(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o644 & ~umask)  # mkstemp's 0600 would hide it from a daemon run as another user
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a crash once the directory is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _line(name: str, f: Figures) -> str:
    recall = " ".join(f"{k} {v:.3f}" for k, v in f.recall.items())
    return (f"  {name:<8} accuracy {f.accuracy:.3f}   spam precision {f.spam_precision:.3f}   "
            f"recall: {recall}")


def run_train(
    path: str, model_path: str, *, merge: bool = False, force: bool = False, folds: int = 5,
    as_json: bool = False,
) -> int:
    """Entry point of ``leadbox train``. Exit codes: 0 written, 1 refused, 2 unusable input."""
    err = sys.stderr
    try:
        rows, problems = load_rows([path])
    except OSError as exc:
        print(f"leadbox train: cannot read {path}: {exc.strerror or exc}", file=err)
        return 2
    for problem in problems:
        print(f"leadbox train: {problem}", file=err)
    extra: list[LabeledRow] = []
    if merge:
        extra, _ = load_rows([SHIPPED_TRAINING])
    if folds < 2:
        print("leadbox train: --folds must be at least 2", file=err)
        return 2
    counts = {label: sum(r.category == label for r in rows) for label in LABELS}
    if len(rows) < folds:
        print(f"leadbox train: {path} has {len(rows)} usable labelled lines; at least {folds} "
              "(one per fold) are needed", file=err)
        return 2
    if not merge and min(counts.values()) < 2:
        few = ", ".join(f"{k} ({v})" for k, v in counts.items() if v < 2)
        print(f"leadbox train: every category needs at least 2 lines without --merge; too few: {few}. "
              "Add lines or pass --merge to train with the shipped data too", file=err)
        return 2
    target = Path(model_path)
    current_path = resolve_model_path(model_path)
    try:
        current = load_model(current_path)
    except ModelError as exc:
        if not force:
            print(f"leadbox train: {exc}; pass --force to replace it", file=err)
            return 2
        current = load_model(SHIPPED_MODEL)
        current_path = SHIPPED_MODEL
    settings = TrainSettings()
    result = compare(rows, extra, current, folds, settings)
    report: dict[str, Any] = {
        "file": path, "rows": len(rows), "merged_shipped_rows": len(extra), "folds": folds,
        "current_model": str(current_path), "model_path": str(target),
        "before": result.before.as_dict(), "after": result.after.as_dict(),
        "worse": result.worse, "written": False,
    }
    if result.worse and not force:
        report["reason"] = f"new model is worse on {' and '.join(result.worse)}"
    else:
        model = fit(examples_from(rows + extra, settings), settings)
        model.info.update({"source": Path(path).name, "merged_shipped": merge,
                           "cv_before": report["before"], "cv_after": report["after"]})
        try:
            write_atomically(target, model)
        except OSError as exc:
            print(f"leadbox train: cannot write {target}: {exc.strerror or exc}", file=err)
            return 2
        report["written"] = True
    if as_json:
        print(json.dumps(report, ensure_ascii=False, sort_keys=True))
    else:
        print(f"{len(rows)} labelled lines from {path}"
              + (f" + {len(extra)} shipped training lines" if merge else "")
              + f"; {folds}-fold cross-validation on {path}'s lines:")
        print(_line("current", result.before) + f"   ({current_path})")
        print(_line("new", result.after))
        if report["written"]:
            print(f"wrote {target}" + (" (--force)" if result.worse else "")
                  + "; the daemon loads it at its next start")
        else:
            print(f"not written: {report['reason']} (--force writes it anyway)")
    return 0 if report["written"] else 1
