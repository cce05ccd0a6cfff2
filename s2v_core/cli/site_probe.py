"""``s2v site-probe``: how well the recording site (or another column) can be read from embeddings.

Reads an ``s2v embed`` Parquet (the per-night table, or the per-epoch one), optionally joins a
metadata CSV by night id, and runs the site-shortcut probe
(:func:`s2v_core.evaluation.shortcut.table_site_score`): a logistic regression on standardised
embeddings, subject-grouped stratified folds, repeated over shuffling seeds. It prints the
balanced accuracy with its 95% interval over folds, chance, and the shortcut score.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from s2v_core.cli.options import modalities_from
from s2v_core.cli.output import field
from s2v_core.errors import S2VError

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v site-probe`` to ``sub``."""
    p = sub.add_parser(
        "site-probe",
        help="site-shortcut probe on `s2v embed` output: can the site be decoded from the embeddings?",
        description="Balanced accuracy of a cross-validated logistic-regression probe that predicts a "
        "column (default: site) from the embeddings of an `s2v embed` Parquet, with its 95% interval "
        "over subject-grouped folds and chance level. Lower is better: a site-invariant embedding "
        "scores at chance.",
    )
    p.add_argument("embeddings", help="Parquet written by `s2v embed` (OUT_nights.parquet per night, or OUT.parquet per epoch)")
    p.add_argument("--by", default="site", help="column to predict (default: site), e.g. sex or a metadata column")
    p.add_argument("--metadata", help="CSV with a night id column (night, nsrrid, ...) and site, age, sex or others; "
                                      "joined by night id, its values replace the table's")  # fmt: skip
    p.add_argument("--modalities", help="only nights embedded from exactly these modalities, e.g. ecg,resp "
                                        "(when sites recorded different sensors)")  # fmt: skip
    p.add_argument("--level", choices=("auto", "nights", "epochs"), default="auto",
                   help="probe nights or epochs (default: the table's own rows; a per-epoch table probed by "
                        "nights uses the mean of each night's epochs)")  # fmt: skip
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--repeats", type=int, default=5, help="repeats with other fold shuffles (default 5)")
    p.add_argument("--json", metavar="OUT", help="also write the full result as JSON to OUT ('-': stdout only)")
    p.set_defaults(func=run)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.folds < 2:
        raise S2VError(f"--folds must be at least 2, got {args.folds}")
    if not 1 <= args.repeats <= 100:
        raise S2VError(f"--repeats must be between 1 and 100, got {args.repeats}")
    if not args.by.strip():
        raise S2VError("--by is empty; give a column such as site")


def _load(args: argparse.Namespace):
    from s2v_core.views.embedding_map import (
        join_metadata,
        nights_from_epochs,
        read_embedding_table,
        read_metadata_table,
    )

    table = read_embedding_table(args.embeddings)
    notes = []
    if args.metadata:
        table, match = join_metadata(table, *read_metadata_table(args.metadata))
        notes.append(match.message())
    per_epoch = "epoch" in table.columns
    if args.level == "epochs" and not per_epoch:
        raise S2VError(f"{Path(args.embeddings).name}: a per-night table has no epochs; give the per-epoch "
                       "table (s2v embed --out) or --level nights")  # fmt: skip
    if args.level == "nights" and per_epoch:
        table = nights_from_epochs(table)
        notes.append("per-epoch table probed by nights: each night is the mean of its epochs")
    return table, notes


def _summary(res: dict) -> list[str]:
    lo, hi = res["ci_folds"]
    slo, shi = res["shortcut_ci_folds"]
    classes = ", ".join(f"{field(k)} {v}" for k, v in res["classes"].items())
    rows = res["n_samples"]
    what = f"{rows} nights" if res["rows"] == "nights" else f"{rows} epochs of {res['n_nights']} nights"
    lines = [
        f"{field(res['by'])} probe: {what}, {res['n_sites']} values ({classes}), {res['dim']}-d embeddings"
        + (f", modalities {','.join(res['modalities'])}" if res["modalities"] else ""),
        f"balanced accuracy {res['balanced_accuracy']:.3f} (95% interval {lo:.3f} to {hi:.3f} over "
        f"{res['n_splits']} {res['groups']}-grouped folds, {res['n_repeats']} repeats); chance {res['chance']:.3f}",
        f"shortcut score {res['shortcut_score']:.3f} ({slo:.3f} to {shi:.3f}): 0 at chance, 1 when "
        f"{field(res['by'])} is perfectly decodable; lower is better",
    ]
    return lines


def _warnings(res: dict) -> list[str]:
    out = []
    d = res["dropped"]
    if d["missing_value"]:
        out.append(f"{d['missing_value']} row(s) without a value of {field(res['by'])} left out")
    if d["non_finite"]:
        out.append(f"{d['non_finite']} row(s) with non-finite embeddings left out")
    if d["rare_values"]:
        out.append(f"values seen in fewer than 2 {res['groups']}s left out (never in training when their "
                   f"{res['groups']} is tested): {', '.join(field(v) for v in d['rare_values'][:5])}")  # fmt: skip
    if res["modality_confound"]:
        sets = sorted(res["modality_sets"].items(), key=lambda kv: -kv[1])
        out.append(f"the modality sets differ between values of {field(res['by'])}: the probe may recognise the "
                   f"sensors a night has rather than the {field(res['by'])}; compare with --modalities set to one "
                   f"set ({'; '.join(f'{field(k)}: {v} nights' for k, v in sets[:4])})")  # fmt: skip
    return out


def run(args: argparse.Namespace) -> int:
    """Run the probe and print (and with ``--json`` write) its result."""
    from s2v_core.evaluation.shortcut import table_site_score

    _check_args(args)
    mods = modalities_from(args.modalities)
    table, notes = _load(args)
    res = table_site_score(table, args.by.strip(), modalities=mods, n_splits=args.folds,
                           seeds=tuple(range(args.repeats)))  # fmt: skip
    res["source"] = Path(args.embeddings).name
    res["notes"] = notes
    for note in notes + _warnings(res):
        print(f"note: {field(note)}", file=sys.stderr)
    text = json.dumps(res, indent=1, default=float)
    if args.json == "-":
        print(text)
        return 0
    print("\n".join(_summary(res)))
    if args.json:
        from s2v_core.io.atomic import write_text_atomic

        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text + "\n")
        print(f"result: {out}")
    return 0
