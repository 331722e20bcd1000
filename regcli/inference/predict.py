"""`regcli predict` as a batch job: many untrusted files in, one result row per input out.

One bad input must not stop the others, so every input becomes a row: "ok" with a prediction, or
"error" with a one-line reason (finding and reading the inputs, and refusing the ones that must
not be read, is regcli.inputs' job). The job streams: rows leave (to the callbacks and the output
file) batch by batch, so memory is bounded by the batch, not by how many inputs there are. Ctrl-C
keeps the rows so far: the output file is completed with them, marked incomplete, and the job
says what it kept (regcli.core.errors.Interrupted).

numpy and Pillow only: this runs with the ONNX backend without loading PyTorch.
"""

import csv
import json
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import numpy as np

from regcli.core.config import NUM_CLASSES
from regcli.core.errors import Interrupted, RegcliError, UsageError
from regcli.core.files import atomic_open
from regcli.core.text import shown, terminal_safe
from regcli.inference.inputs import MAX_PIXELS as MAX_PIXELS  # re-exported: the README quotes it
from regcli.inference.inputs import WORKING_SIDE as WORKING_SIDE  # re-exported for the tests
from regcli.inference.inputs import pending_inputs
from regcli.inference.scoring import Predictor, log_softmax

PREDICT_BATCH = 256  # images per inference batch; also the most rows held in memory at once
OUT_SUFFIXES = (".csv", ".json")
CSV_COLUMNS = ["path", "status", "prediction", "probability", "top3", "error"]


class Row(StrEnum):
    """An input's row: predicted, or a one-line reason why not."""

    ok = "ok"
    error = "error"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet may run such a cell

RowCallback = Callable[[dict], None]
FailureCallback = Callable[[str, str], None]


class Kept(KeyboardInterrupt):
    """Ctrl-C, once the output file has been completed with the rows so far."""


def predict_files(
    predict: Predictor,
    paths: Iterable[Path | str],
    out: Path | None = None,
    *,
    on_row: RowCallback | None = None,
    on_failure: FailureCallback | None = None,
    batch_size: int = PREDICT_BATCH,
) -> tuple[int, int]:
    """Predict every input under `paths`; returns (predicted, failed).

    Each result is written to `out` (.csv or .json, written atomically) and then passed on:
    on_row(row) for a prediction, on_failure(path, message) for an input that could not be
    read. Rows come in input order, a batch at a time. The caller exits 1 if any failed.
    UsageError (exit 2) for a bad `out`, and when no input is found at all. On Ctrl-C the rows
    produced so far are kept: `out` is completed and renamed into place, and Interrupted (exit
    130) says how many inputs were done and what `out` keeps.
    """
    check_out(out)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    named: list[str] = []
    counts = {Row.ok: 0, Row.error: 0}
    try:
        with result_file(out) as write:
            for batch in batched(pending_inputs(remember(paths, named)), batch_size):
                for row in predict_batch(predict, batch):
                    write(row)
                    counts[row["status"]] += 1
                    if row["status"] == Row.ok and on_row is not None:
                        on_row(row)
                    elif row["status"] == Row.error and on_failure is not None:
                        on_failure(row["path"], row["error"])
            if not any(counts.values()):
                raise UsageError(nothing_found(named))
    except KeyboardInterrupt as stop:
        message = stopped(counts, out, kept=isinstance(stop, Kept))
        raise Interrupted(message, signal.SIGINT) from None
    return counts[Row.ok], counts[Row.error]


def stopped(counts: dict[str, int], out: Path | None, kept: bool) -> str:
    """What Ctrl-C leaves: how many inputs were done, and what `out` holds of them."""
    done = counts[Row.ok] + counts[Row.error]
    inputs = f"{done:,} input{'' if done == 1 else 's'}"
    so_far = (
        f"stopped by Ctrl-C after {inputs} ({counts['ok']:,} predicted, {counts['error']:,} failed)"
    )
    if out is None:
        return f"{so_far}; nothing was written (no --out file)"
    shown_out = terminal_safe(shown(out))
    if kept:
        return f"{so_far}; {shown_out} keeps their rows, marked incomplete"
    return f"{so_far}; {shown_out} was not written"


def check_out(out: Path | None) -> None:
    """Refuse an unusable --out before any work is done."""
    if out is None:
        return
    shown_out = terminal_safe(shown(out))
    if Path(out).suffix.lower() not in OUT_SUFFIXES:
        raise UsageError(f"--out {shown_out}: use a .csv or .json file name")
    if Path(out).is_dir():
        raise UsageError(f"--out {shown_out} is a folder: use a .csv or .json file name")


def nothing_found(named: list[str]) -> str:
    if not named:
        return "no input given: name image files (PNG, JPEG, BMP), folders or .npy arrays"
    where = ", ".join(terminal_safe(n) for n in named[:3]) + (", ..." if len(named) > 3 else "")
    return f"no input found in {where}: folders are searched for .png, .jpg, .jpeg, .bmp and .npy"


# --- finding inputs -------------------------------------------------------------------------


def remember(paths: Iterable[Path | str], named: list[str]) -> Iterator[Path]:
    """The paths, noting the first few in `named` (for the message when nothing is found)."""
    for path in paths:
        if len(named) < 4:
            named.append(shown(path))
        yield Path(path)


# --- predicting -----------------------------------------------------------------------------


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_batch(predict: Predictor, batch: list) -> Iterator[dict]:
    """One row per entry of the batch, in order; one predictor call for all its images."""
    images = [image for _, image, _ in batch if image is not None]
    probabilities = iter(probabilities_of(predict, images) if images else ())
    for label, image, message in batch:
        if image is None:
            yield {"path": label, "status": Row.error.value, "error": message}
            continue
        p = next(probabilities)
        if not np.isfinite(p).all():
            message = f"{terminal_safe(label)}: the model's output is NaN or infinite"
            yield {"path": label, "status": Row.error.value, "error": message}
            continue
        top = np.argsort(-p, kind="stable")[:3]
        yield {
            "path": label,
            "status": Row.ok.value,
            "prediction": int(top[0]),
            "probability": float(p[top[0]]),
            "top3": [[int(c), round(float(p[c]), 6)] for c in top],
        }


def probabilities_of(predict: Predictor, images: list[np.ndarray]) -> np.ndarray:
    logits = np.asarray(predict(np.stack(images)[:, None]))
    if logits.shape != (len(images), NUM_CLASSES):
        raise RegcliError(
            f"the model returned logits of shape {logits.shape}, "
            f"expected ({len(images)}, {NUM_CLASSES})"
        )
    with np.errstate(all="ignore"):  # a non-finite row is reported as that input's failure
        return np.exp(log_softmax(logits))


# --- writing results ------------------------------------------------------------------------


@contextmanager
def result_file(out: Path | None) -> Iterator[Callable[[dict], None]]:
    """A function writing one row to `out` (or nowhere), inside an atomic write.

    On KeyboardInterrupt the file is completed with the rows so far and still renamed into
    place, then Kept (a KeyboardInterrupt) says so; on any other error it is discarded, as every
    artifact (and a second Ctrl-C while it is being completed discards it too).
    """
    if out is None:
        yield lambda row: None
        return
    interrupted = False
    with atomic_open(out, "w") as f:
        rows = JsonRows(f) if Path(out).suffix.lower() == ".json" else CsvRows(f)
        try:
            yield rows.write
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            rows.discard()
            raise
        rows.finish(complete=not interrupted)
    if interrupted:
        raise Kept


class CsvRows:
    """path,status,prediction,probability,top3,error; text cells are safe to open in Excel."""

    def __init__(self, f):
        self.writer = csv.writer(f)
        self.writer.writerow(CSV_COLUMNS)

    def write(self, row: dict) -> None:
        top3 = " ".join(f"{c}:{p:.4f}" for c, p in row.get("top3", []))
        cells = [row.get(column, "") for column in CSV_COLUMNS]
        cells[CSV_COLUMNS.index("top3")] = top3
        self.writer.writerow([csv_cell(c) if isinstance(c, str) else c for c in cells])

    def finish(self, complete: bool) -> None:
        pass

    def discard(self) -> None:
        pass


class JsonRows:
    """{"predictions": [...], "failures": [...], "predicted", "failed", "complete"}.

    Written as it goes, one row a line: predictions straight into the file, failures into a
    temporary file until the predictions list is closed (memory stays bounded). `complete` is
    false when Ctrl-C cut the job short.
    """

    def __init__(self, f):
        self.f, self.predicted, self.failed = f, 0, 0
        # closed by finish or discard, which result_file always calls
        self.failures = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.f.write('{\n  "predictions": [')

    def write(self, row: dict) -> None:
        line = json.dumps(row, allow_nan=False, ensure_ascii=False)
        if row["status"] == Row.ok:
            self.f.write(("," if self.predicted else "") + "\n    " + line)
            self.predicted += 1
        else:
            self.failures.write(line + "\n")
            self.failed += 1

    def finish(self, complete: bool) -> None:
        self.f.write("\n  ],\n" if self.predicted else "],\n")
        self.f.write('  "failures": [')
        self.failures.seek(0)
        for i, line in enumerate(self.failures):
            self.f.write(("," if i else "") + "\n    " + line.rstrip("\n"))
        self.f.write("\n  ],\n" if self.failed else "],\n")
        counts = f'"predicted": {self.predicted},\n  "failed": {self.failed}'
        self.f.write(f'  {counts},\n  "complete": {json.dumps(complete)}\n}}\n')
        self.discard()

    def discard(self) -> None:
        self.failures.close()


def csv_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one that could start a formula gets a '."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
