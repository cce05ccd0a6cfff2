"""Options shared by several ``s2v`` commands, and turning them into library arguments.

Everything here is cheap to import (no torch, no pandas): the parser of every command is built
at start-up, also for ``s2v --version``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits  # light (14 ms): parsing may import it

from s2v_core.errors import S2VError
from s2v_core.modalities import parse_modality_list
from s2v_core.shipped import default_model_dir

if TYPE_CHECKING:  # the parser is built without importing the cohort package
    from s2v_core.cohort.cluster import ClusterSpec

__all__ = [
    "add_cluster_options",
    "add_compare_option",
    "add_device_option",
    "add_input_options",
    "add_overwrite_option",
    "add_quiet_option",
    "add_seed_option",
    "add_sfreq_option",
    "RECORDING_HELP",
    "TOKENIZERS",
    "add_threads_option",
    "add_tokenizer_option",
    "apply_threads",
    "check_device_option",
    "cluster_from_args",
    "load_model",
    "model_folder",
    "modalities_from",
    "parse_channel_map",
    "refuse_overwrite",
]


RECORDING_HELP = ("a recording: EDF/EDF+/BDF, a WFDB record (.hea with .dat signals and/or .ecg beats; "
                  ".st stages read with it), a DREAMS text excerpt, or through MNE FIF, BrainVision .vhdr, "
                  "EEGLAB .set, GDF, CNT")  # fmt: skip
"""Help text of a command's recording argument (what :mod:`s2v_core.recording.registry` reads)."""


def add_device_option(p: argparse.ArgumentParser, default: str | None = "cpu", help: str | None = None) -> None:
    """``--device``: where torch runs."""
    p.add_argument("--device", default=default, help=help or "cpu, cuda, cuda:N, mps or auto")


def add_seed_option(p: argparse.ArgumentParser, default: int | None = 0, help: str | None = None) -> None:
    """``--seed``."""
    p.add_argument("--seed", type=int, default=default, help=help)


def add_quiet_option(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    """``--quiet``."""
    p.add_argument("--quiet", action="store_true", help=help)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch intra-op threads (fewer than the cores avoids oversubscription)."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch and for reading channels (default: torch's choice and 2 "
        "reading threads; 1 is often fastest on a busy machine)",
    )


def apply_threads(threads: int | None) -> None:
    """Apply ``--threads`` to this process: torch's intra-op threads, channel reading, and the BLAS
    and OpenMP pools numpy and scipy use (the resampler's and the features' matrix products)."""
    if threads is None:
        return
    if threads < 1:
        raise S2VError(f"--threads must be >= 1, got {threads}")
    import torch  # here: building the parser must not import torch

    from s2v_core.recording.loading import set_read_threads

    torch.set_num_threads(threads)
    set_read_threads(threads)
    threadpool_limits(threads)  # every pool loaded by now (numpy's BLAS is: torch imports numpy)


def parse_channel_map(items: Sequence[str] | None) -> dict[str, str | None]:
    """``["eeg=C4-M1", "emg="]`` -> ``{"eeg": "C4-M1", "emg": None}`` (empty: drop it)."""
    out: dict[str, str | None] = {}
    for item in items or ():
        if "=" not in item:
            raise S2VError(f"--map expects MODALITY=CHANNEL (or MODALITY= to drop it), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().lower()] = value or None
    return out


def modalities_from(text: str | None, option: str = "--modalities") -> tuple[str, ...] | None:
    """A comma-separated modality list, checked (None when not given)."""
    try:
        mods = parse_modality_list(text)
    except ValueError as exc:
        raise S2VError(str(exc)) from None
    if text is not None and not mods:
        raise S2VError(f"{option} is empty; give e.g. {option} eeg,eog")
    return mods


def add_input_options(p: argparse.ArgumentParser) -> None:
    """What reading one recording and choosing a model take (``predict``, ``embed``)."""
    p.add_argument("--hypnogram", help="hypnogram file (expert stages)")
    p.add_argument(
        "--modalities", help="comma-separated subset, e.g. eeg,eog (default: all available)"
    )
    p.add_argument("--model", help="classifier folder (default: the shipped model)")
    p.add_argument(
        "--map",
        action="append",
        metavar="MODALITY=CHANNEL",
        help="override the channel of a modality (repeatable); MODALITY= drops it",
    )
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="pad/trim a hypnogram whose length differs from the signal",
    )
    add_sfreq_option(p)
    add_device_option(p)
    add_threads_option(p)


def add_compare_option(p: argparse.ArgumentParser) -> None:
    """``--compare yasa,sleepecg``: run other stagers on the same night and score every pair."""
    p.add_argument("--compare", metavar="PEERS",
                   help="also stage the night with these peers (comma-separated: yasa, sleepecg) and "
                   "compare: their per-epoch stages go into the CSV and JSON, with Cohen's kappa, accuracy "
                   "and the epochs compared for every pair among ours, each peer and the expert (a peer that "
                   "does not apply says why on stderr)")  # fmt: skip


def add_sfreq_option(p: argparse.ArgumentParser) -> None:
    """``--sfreq``: the sampling rate of a DREAMS text excerpt (the file does not store it)."""
    p.add_argument("--sfreq", type=float, default=None,
                   help="sampling rate in Hz of a DREAMS text excerpt (default: from the span of its hypnogram)")


TOKENIZERS: dict[str, dict] = {
    "raw": {},
    "features": {"raw_branch": False, "features": 2},
    "features-binned": {"raw_branch": False, "features": 2, "feature_bins": 9},
    "features-mixed": {"raw_branch": False, "features": 2, "feature_bins": 9, "binned_modalities": ("eeg", "eog")},
    "raw+features": {"features": 2},
}
"""``--tokenizer`` choices -> ModelConfig overrides (``features-binned``: each feature through its one-hot bin, see FeatureBins; a test keeps ``features`` at the library's version)."""


def add_tokenizer_option(p: argparse.ArgumentParser, default: str | None = "raw") -> None:
    """``--tokenizer raw|features|raw+features``: what each modality's tokenizer reads."""
    p.add_argument("--tokenizer", choices=tuple(TOKENIZERS), default=default,
                   help="what the tokenizers read: the raw samples (the paper's), engineered per-night-normalised "
                        "features (transfer better to real recordings), the same features read through one-hot bins (features-binned: a step function per feature, flat outside the training range), bins for EEG/EOG and values elsewhere (features-mixed), or both (default: %(default)s)")


def model_folder(arg: str | None) -> Path:
    """The ``--model`` folder, or the shipped classifier."""
    return Path(arg) if arg else default_model_dir()


def load_model(arg: str | None, device: str) -> tuple[Any, dict, str]:
    """The classifier of ``--model`` (or the shipped one): ``(model, extra, model id)``."""
    from s2v_core.inference.predict import load_classifier, model_id

    folder = model_folder(arg)
    model, _, extra = load_classifier(folder, device=device)
    return model, extra, model_id(folder)


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Add ``--workers``, ``--scheduler``, ``--slurm`` and the ``--slurm-*`` options."""
    g = p.add_argument_group(
        "cluster (Dask)", "run the nights in parallel; without these options the run is serial"
    )
    ex = g.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, metavar="N",
                    help="local Dask cluster of N worker processes (one thread each)")
    ex.add_argument("--scheduler", metavar="ADDRESS",
                    help="existing Dask scheduler, e.g. tcp://host:8786")
    ex.add_argument("--slurm", action="store_true",
                    help="start workers as SLURM jobs (needs dask-jobqueue)")
    g.add_argument("--slurm-queue", help="SLURM partition")
    g.add_argument("--slurm-account", help="SLURM account")
    g.add_argument("--slurm-cores", type=int, default=4,
                   help="cores per job, one worker process each (default 4)")
    g.add_argument("--slurm-memory", default="16GB", help="memory per job (default 16GB)")
    g.add_argument("--slurm-walltime", default="02:00:00", help="walltime per job (default 2 h)")
    g.add_argument("--slurm-jobs", type=int, default=1, help="number of jobs (default 1)")
    g.add_argument("--slurm-prologue", action="append", default=[], metavar="LINE",
                   help="shell line run in each job before the worker starts, e.g. "
                   "'source ~/venvs/s2v/bin/activate' (repeatable)")  # fmt: skip


def cluster_from_args(args: argparse.Namespace) -> ClusterSpec | None:
    """The :class:`ClusterSpec` of the parsed options, or ``None`` for a serial run."""
    from s2v_core.cohort.cluster import ClusterSpec

    workers = getattr(args, "workers", None)
    scheduler = getattr(args, "scheduler", None)
    slurm = bool(getattr(args, "slurm", False))
    if workers is None and not scheduler and not slurm:
        return None
    return ClusterSpec(
        workers=workers,
        scheduler=scheduler,
        slurm=slurm,
        slurm_queue=args.slurm_queue,
        slurm_account=args.slurm_account,
        slurm_cores=args.slurm_cores,
        slurm_memory=args.slurm_memory,
        slurm_walltime=args.slurm_walltime,
        slurm_jobs=args.slurm_jobs,
        slurm_prologue=list(args.slurm_prologue or []),
    ).validate()


def check_device_option(args: argparse.Namespace) -> None:
    """Refuse an unusable ``--device`` in one line before a command reads or builds anything.

    Skipped for runs on a Dask cluster (``--workers``/``--scheduler``/``--slurm``): the workers,
    not this machine, must have the device; each worker checks it when it loads the model.

    Raises
    ------
    DeviceError
        See :func:`s2v_core.model.device.resolve_device`.
    """
    device = getattr(args, "device", None)
    if device is None or getattr(args, "workers", None) or getattr(args, "scheduler", None) \
            or getattr(args, "slurm", False):
        return
    from s2v_core.model.device import resolve_device  # imports torch: not at parser build time

    resolve_device(device)


def add_overwrite_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace the ``what`` a previous run left in ``--out`` (refused without it)."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace the {what} already in --out (without it such an --out is refused)")  # fmt: skip


def refuse_overwrite(args: argparse.Namespace, out: str | Path, names: Sequence[str],
                     what: str, resume: str | None = None) -> None:  # fmt: skip
    """Without ``--overwrite``, refuse in one line when ``out`` already holds one of ``names``.

    ``names`` are paths relative to ``out`` (``out`` itself when it is ``"."``); ``resume`` is
    the option that continues such a run instead, where the command has one.
    """
    if getattr(args, "overwrite", False):
        return
    out = Path(out)
    found = [n for n in names if (out / n).exists()]
    if found:
        shown = ", ".join(str(out) if n == "." else n for n in found)
        hint = f"continue it ({resume}), " if resume else ""
        raise S2VError(f"{out} already holds the {what} of a previous run ({shown}); {hint}choose "
                       "another --out, or pass --overwrite to replace it")  # fmt: skip
