"""The public real recordings of ../shared/data as a cohort store, and the adaptation stage on it.

    python scripts/real_data.py prepare --out .cache/recipe/real
    python scripts/real_data.py adapt --synthetic .cache/recipe/store --real .cache/recipe/real \
        --pretrained .cache/recipe/finetune/best --out .cache/recipe/adapt

What goes in (the data are read where they are, never copied into the project):

* PhysioNet slpdb, 12 records of 10 subjects: ``ibi`` from the expert beat annotations, stages
  from ``.st`` (site ``slpdb``; age and sex from the headers; ``slp01a`` and ``slp01b`` are one
  subject);
* DREAMS, 4 subjects: the 30-min EEG excerpts ``excerpt1-4.txt`` (site ``dreams``), and the full
  50-Hz PSG of excerpt 3 (``excerpt3.edf``, night ``excerpt3_psg``) as the same subject as
  ``excerpt3.txt``.

Every night is in the train split; leave-one-subject-out evaluation drops a subject instead
(``bench/bench_real.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from s2v_core.cohort.prepare import prepare_store
from s2v_core.inference.familiarity import file_fingerprint
from s2v_core.io.atomic import write_text_atomic
from s2v_core.sanitize.cells import to_csv
from s2v_core.train.adapt import SOURCES_FILE, adapt_to_real

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("S2V_SHARED_DATA", ROOT.parent / "shared" / "data"))


def slpdb_table(folder: Path) -> pd.DataFrame:
    records = sorted(p for p in folder.glob("*.ecg") if p.with_suffix(".st").exists())
    return pd.DataFrame([{"night": p.stem, "subject": p.stem.rstrip("abx"), "site": "slpdb",
                          "psg_file": str(p.resolve()), "split": "train"} for p in records])  # fmt: skip


def dreams_table(folder: Path) -> pd.DataFrame:
    rows = []
    for k in (1, 2, 3, 4):
        signal, hyp = folder / f"excerpt{k}.txt", folder / f"Hypnogram_excerpt{k}.txt"
        if signal.exists() and hyp.exists():
            rows.append({"night": f"excerpt{k}", "subject": f"excerpt{k}", "site": "dreams",
                         "psg_file": str(signal.resolve()), "hypnogram_file": str(hyp.resolve()), "split": "train"})  # fmt: skip
    psg, hyp = folder / "excerpt3.edf", folder / "Hypnogram_excerpt3.txt"
    if psg.exists() and hyp.exists():
        rows.append({"night": "excerpt3_psg", "subject": "excerpt3", "site": "dreams",
                     "psg_file": str(psg.resolve()), "hypnogram_file": str(hyp.resolve()), "split": "train"})  # fmt: skip
    return pd.DataFrame(rows)


def prepare_real(out: str | Path, shared: Path = SHARED, progress: bool = False) -> Path:
    """The real store (see the module docstring); returns its path."""
    out = Path(out)
    tables = {"slpdb": slpdb_table(shared / "slpdb"), "dreams": dreams_table(shared / "dreams")}
    if not any(len(t) for t in tables.values()):
        raise SystemExit(f"{shared}: no slpdb or DREAMS recordings here")
    with tempfile.TemporaryDirectory() as tmp:
        for name, table in tables.items():
            if len(table):
                path = Path(tmp) / f"{name}.csv"
                to_csv(table, path, index=False)
                run = prepare_store(shared / name, out, metadata_csv=path, progress=progress)
                failed = run[run["status"] == "failed"]
                if len(failed):
                    raise SystemExit(f"preparing {name} failed: {failed[['night', 'error']].to_dict('records')}")
    # which file each night came from: the adapted model records them, and staging one of them
    # later says it was part of the training data
    sources = {row.night: file_fingerprint(row.psg_file) for t in tables.values() for row in t.itertuples()}
    write_text_atomic(out / SOURCES_FILE, json.dumps(sources, indent=1, sort_keys=True) + "\n")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("prepare", help="the real recordings as a store")
    a.add_argument("--out", required=True)
    a.add_argument("--data", default=str(SHARED))
    b = sub.add_parser("adapt", help="the adaptation stage: synthetic classifier -> synthetic + real")
    b.add_argument("--synthetic", required=True, help="synthetic store")
    b.add_argument("--real", required=True, help="real store (prepare)")
    b.add_argument("--pretrained", required=True, help="synthetic-trained classifier")
    b.add_argument("--out", required=True)
    args = p.parse_args()
    if args.command == "prepare":
        print(f"real store: {prepare_real(args.out, Path(args.data), progress=True)}")
    else:
        res = adapt_to_real(args.synthetic, args.real, args.out, args.pretrained)
        print(f"adapted classifier: {res.checkpoint} ({len(res.history)} passes)")


if __name__ == "__main__":
    main()
