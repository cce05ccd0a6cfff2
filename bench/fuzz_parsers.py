"""Coverage-guided fuzzing of the EDF header checks and every hypnogram and metadata parser.

Contract under test (see ``tests/fuzz_corpus/targets.py``): for any input bytes the parsers
return or raise :class:`s2v_core.errors.S2VError` naming the file; never another exception,
never a hang (libFuzzer ``-timeout``), never unbounded memory (``-rss_limit_mb``).

Usage::

    python bench/fuzz_parsers.py --target all --seconds 120
    python bench/fuzz_parsers.py --target edf --seconds 60 --corpus tests/fuzz_corpus
    python bench/fuzz_parsers.py --target hypnogram --reproduce FINDING_FILE
    python bench/fuzz_parsers.py --write-seeds tests/fuzz_corpus
    python bench/fuzz_parsers.py --target all --seconds 60 --engine random --seed 1

Each target runs in atheris (libFuzzer) child processes, seeded from the corpus sub-folders
in :data:`SEED_DIRS`, with the corpus' ``<target>.dict`` dictionary. A child stops at its
first finding; the parent records it under a signature (exception type and innermost
``s2v_core`` frame), tells the next child to let that signature pass, and restarts it for
the time left, so one run reports every distinct finding. ``--engine random`` (the default
when atheris is missing) is a seeded, reproducible mutation loop without coverage feedback.

The hypnogram and metadata targets run with the limits of ``s2v_core.io.text_limits`` lowered
(``targets.LOW_LIMITS``; ``--real-limits`` keeps them) so that inputs of ``--max-len`` bytes reach
the row, annotation, element and size limits too; a refusal by a limit is an accepted outcome
(an ``S2VError`` naming the file, one line of at most ``targets.MAX_MESSAGE_CHARS`` characters),
counted in the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT / "tests" / "fuzz_corpus"
TARGETS = ("edf", "hypnogram", "metadata")
SEED_DIRS = {"edf": ("edf",), "hypnogram": ("hypnogram", "edf"), "metadata": ("metadata",)}
"""Target -> corpus sub-folders that seed it (the EDF+ files also seed the hypnogram target)."""
LOW_LIMIT_TARGETS = ("hypnogram", "metadata")
"""Targets fuzzed with the text limits lowered (``targets.LOW_LIMITS``, unless --real-limits) so
that inputs of --max-len bytes reach every limit; a refusal by a limit is an accepted outcome."""
KNOWN_ENV = "S2V_FUZZ_KNOWN"  # file of finding signatures a child lets pass
RECORD_ENV = "S2V_FUZZ_RECORD"  # file where a child describes the finding it stops on
TIMEOUT_ENV = "S2V_FUZZ_TIMEOUT"  # CPU seconds per input before Hang is raised in the child
REAL_LIMITS_ENV = "S2V_FUZZ_REAL_LIMITS"  # set: the child keeps the real text limits
_STATS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.MULTILINE)


def _shared():
    """The shared targets and seed helpers (tests/fuzz_corpus), importable from the repo root."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fuzz_corpus import make_seeds, targets

    return targets, make_seeds


def _seed_files(corpus: Path, target: str) -> list[Path]:
    dirs = [corpus / d for d in SEED_DIRS[target] if (corpus / d).is_dir()] or [corpus]
    return sorted(p for d in dirs for p in d.iterdir() if p.is_file() and p.suffix != ".py")


def _is_edf(data: bytes) -> bool:
    return data[:8] in (b"0       ", b"\xffBIOSEMI")


def mutate_edf_field(data: bytes, rng: random.Random) -> bytes:
    """Overwrite one EDF header field (fixed, or of one signal) with a number-like token."""
    seeds = _shared()[1]
    if len(data) < 256:
        return data
    try:
        n_signals = int(data[252:256])
    except ValueError:
        n_signals = 0
    if n_signals < 1 or 256 * (n_signals + 1) > len(data) or rng.random() < 0.4:
        name = rng.choice(("header_bytes", "n_records", "record_duration", "n_signals", "reserved"))
        offset, width = seeds.HEADER_FIELDS[name]
    else:
        names = [f for f, _ in seeds.SIGNAL_FIELDS if f not in ("transducer", "prefilter")]
        index = rng.randrange(n_signals)
        offset, width = seeds.signal_field_span(rng.choice(names), index, n_signals)
    extra = (str(rng.randint(-(10**7), 10**8)), f"{rng.uniform(-1e4, 1e4):.3g}", "", "abc")
    token = rng.choice((*seeds.NUMBER_TOKENS, *seeds.LIMIT_TOKENS, *extra, "EDF Annotations", "EDF+D", "1.5"))
    return seeds.set_field(data, offset, width, token)


# --- atheris engine ----------------------------------------------------------------------------
def _child(target: str, libfuzzer_args: list[str]) -> None:
    """Child process: instrument s2v_core and hand the target to libFuzzer (never returns)."""
    import atheris

    targets = _shared()[0]
    targets.preload()
    # str.startswith/endswith comparisons feed the dictionary. Not the "RegEx" hook: in atheris
    # 3.0.0 it raises TypeError inside libraries that compile bytes patterns (MNE's EDF
    # annotation reader), which changes the behaviour under test.
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["s2v_core"]):
        import s2v_core.io.edf  # noqa: F401
        import s2v_core.io.hypnogram  # noqa: F401
        import s2v_core.io.metadata  # noqa: F401
    if target in LOW_LIMIT_TARGETS and not os.environ.get(REAL_LIMITS_ENV):
        targets.lower_limits()
    known_file = Path(os.environ.get(KNOWN_ENV, os.devnull))
    known = set(known_file.read_text().split("\n")) if known_file.is_file() else set()
    record = os.environ.get(RECORD_ENV)
    scratch = Path(tempfile.mkdtemp(prefix="s2v-fuzz-scratch-"))
    run = targets.RUNNERS[target]
    for seed in _seed_files(DEFAULT_CORPUS, target)[:4]:  # warm the parsers' lazy imports
        try:
            run(seed.read_bytes(), scratch)
        except Exception:  # noqa: BLE001 - warm-up only; findings come from the fuzz loop
            pass

    seconds = float(os.environ.get(TIMEOUT_ENV, "2"))

    def one_input(data: bytes) -> None:
        try:
            targets.run_bounded(seconds, run, data, scratch)
        except (Exception, targets.Hang) as exc:
            if targets.signature(exc) in known:
                return
            if record:  # save the input here: libFuzzer does not always name its unit
                unit = Path(record).with_name(f"finding-{hashlib.sha1(data).hexdigest()}")
                unit.write_bytes(data)
                Path(record).write_text(json.dumps({**targets.describe(exc), "input": str(unit)}))
            raise

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if _is_edf(data) and rng.random() < 0.3:
            return mutate_edf_field(data, rng)[:max_size]
        return atheris.Mutate(data, max_size)

    custom = {"custom_mutator": mutator} if target != "metadata" else {}
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input, **custom)
    atheris.Fuzz()


def fuzz_atheris(target: str, seconds: float, corpus: Path, workdir: Path, args) -> dict:
    """Fuzz one target for ``seconds`` in restarted libFuzzer children; returns the summary."""
    work_corpus, seed_dir = workdir / "corpus" / target, workdir / "seeds" / target
    artifacts = workdir / "findings" / target
    for d in (work_corpus, seed_dir, artifacts):
        d.mkdir(parents=True, exist_ok=True)
    for p in _seed_files(corpus, target):  # libFuzzer may write into its corpus dirs: copy
        (seed_dir / p.name).write_bytes(p.read_bytes())
    known_file, record = workdir / f"known-{target}.txt", artifacts / "last-finding.json"
    known_file.write_text("")
    dictionary = corpus / f"{target}.dict"
    out = {"target": target, "engine": "atheris", "executions": 0, "cov": 0, "ft": 0}
    findings: list[dict] = []
    started = time.monotonic()
    for run_index in range(args.max_restarts + 1):
        left = int(started + seconds - time.monotonic())
        if left < 1:
            break
        record.unlink(missing_ok=True)
        options = {
            "max_total_time": left,
            "timeout": 2 * args.timeout + 2,  # backstop for hangs in C code
            "rss_limit_mb": args.rss_mb,
            "max_len": args.max_len,
            "seed": args.seed + run_index + 1,
            "artifact_prefix": f"{artifacts}/",
            "print_final_stats": 1,
            **({"dict": dictionary} if dictionary.is_file() else {}),
        }
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--"]
        cmd += [f"-{k}={v}" for k, v in options.items()] + [str(work_corpus), str(seed_dir)]
        env = {**os.environ, KNOWN_ENV: str(known_file), RECORD_ENV: str(record)}
        env[TIMEOUT_ENV] = str(args.timeout)
        if args.real_limits:
            env[REAL_LIMITS_ENV] = "1"
        log_path = workdir / f"{target}-{run_index}.log"
        with open(log_path, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
        text = log_path.read_text(errors="replace")
        if stats := _STATS.findall(text):
            execs, cov, ft, corp = (int(v) for v in stats[-1])
            out.update(cov=max(out["cov"], cov), ft=max(out["ft"], ft), corpus=corp)
            out["executions"] += execs
        if proc.returncode == 0:
            break
        finding = json.loads(record.read_text()) if record.exists() else _native_finding(text)
        unit = re.search(r"Test unit written to (\S+)", text)
        finding["input"] = finding.get("input") or (unit.group(1) if unit else None)
        findings.append({**finding, "log": str(log_path)})
        with open(known_file, "a") as fh:
            fh.write(finding["signature"] + "\n")
        if sum(f["signature"] == finding["signature"] for f in findings) >= 3:
            break  # the same timeout/oom/native crash again and again: stop this target
    return {**out, "seconds": round(time.monotonic() - started, 1), "findings": findings}


def _native_finding(log_text: str) -> dict:
    kinds = {"libFuzzer: timeout": "timeout", "out-of-memory": "oom", "deadly signal": "signal"}
    kind = next((v for k, v in kinds.items() if k in log_text), "crash")
    return {"signature": kind, "error": kind, "traceback": log_text[-3000:]}


# --- random engine (no coverage feedback) -------------------------------------------------------
def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """1-4 random mutations: flip, set, insert, delete, truncate, number, crossover, EDF field."""
    buf = bytearray(data)
    numbers = _shared()[1].NUMBER_TOKENS
    for _ in range(rng.randint(1, 4)):
        pos, op = rng.randrange(len(buf) + 1), rng.randrange(8)
        if op == 0 and pos < len(buf):
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and pos < len(buf):
            buf[pos] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3:
            del buf[pos : pos + rng.randint(1, 64)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            token = rng.choice(numbers).encode()
            buf[pos : pos + len(token)] = token
        elif op == 6:
            other = rng.choice(pool)
            buf[pos:] = other[rng.randrange(len(other) + 1) :]
        elif op == 7 and _is_edf(buf):
            buf = bytearray(mutate_edf_field(bytes(buf), rng))
    return bytes(buf)


def fuzz_random(target: str, seconds: float, corpus: Path, workdir: Path, args) -> dict:
    """Seeded mutation loop in this process; over ``--timeout`` CPU seconds is a Hang finding."""
    targets = _shared()[0]
    targets.preload()
    rng = random.Random(args.seed)
    pool = [p.read_bytes() for p in _seed_files(corpus, target)] or [b""]
    run, scratch = targets.RUNNERS[target], Path(tempfile.mkdtemp(prefix="s2v-fuzz-scratch-"))
    artifacts = workdir / "findings" / target
    artifacts.mkdir(parents=True, exist_ok=True)
    findings: dict[str, dict] = {}
    started, execs = time.monotonic(), 0
    sys.stdout.flush()
    saved_stdout = os.dup(1)  # the EDF C library prints to stdout on some bad headers
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    limits = contextlib.ExitStack()
    if target in LOW_LIMIT_TARGETS and not args.real_limits:
        limits.enter_context(targets.lowered_limits())  # restored below (tests share the process)
    refusals_before = targets.REFUSALS["limits"]
    try:
        while time.monotonic() - started < seconds:
            data = mutate(rng, rng.choice(pool), pool)[: args.max_len]
            found = None
            try:
                targets.run_bounded(args.timeout, run, data, scratch)
            except (Exception, targets.Hang) as exc:
                found = targets.describe(exc)
            execs += 1
            if found and found["signature"] not in findings:
                unit = artifacts / f"finding-{hashlib.sha1(data).hexdigest()}"
                unit.write_bytes(data)
                findings[found["signature"]] = {**found, "input": str(unit)}
    finally:
        limits.close()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    engine = f"random(seed={args.seed})"
    elapsed = round(time.monotonic() - started, 1)
    summary = {"target": target, "engine": engine, "executions": execs, "cov": None, "ft": None}
    summary["limit_refusals"] = targets.REFUSALS["limits"] - refusals_before
    return {**summary, "seconds": elapsed, "findings": list(findings.values())}


# --- command line --------------------------------------------------------------------------------
def print_summary(results: list[dict]) -> None:
    """One line per target, then every finding with its saved input."""
    head = ("target", "engine", "s", "execs", "exec/s", "cov", "ft", "found")
    print("{:<10} {:<16} {:>6} {:>9} {:>7} {:>6} {:>6} {:>5}".format(*head))
    for r in results:
        rate = r["executions"] / r["seconds"] if r["seconds"] else 0.0
        row = (r["target"], r["engine"], r["seconds"], r["executions"], f"{rate:.0f}")
        row += (r["cov"] or "-", r["ft"] or "-", len(r["findings"]))
        print("{:<10} {:<16} {:>6} {:>9} {:>7} {:>6} {:>6} {:>5}".format(*row))
    for r in results:
        if r.get("limit_refusals"):  # parser calls (several per input) refused by a text limit
            print(f"{r['target']}: {r['limit_refusals']} parser calls refused by a limit (accepted)")
    for r in results:
        for f in r["findings"]:
            print(f"\n[{r['target']}] {f['signature']}: {f['error']}\n  input: {f.get('input')}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--target", choices=[*TARGETS, "all"], default="all")
    add("--seconds", type=float, default=60.0, help="fuzzing time per target")
    add("--corpus", type=Path, default=DEFAULT_CORPUS, help="seed folder (see SEED_DIRS)")
    add("--workdir", type=Path, help="corpus, findings and logs (default: a new temp dir)")
    add("--engine", choices=["atheris", "random"], help="default: atheris when installed")
    add("--seed", type=int, default=0, help="random seed (both engines)")
    add("--timeout", type=int, default=2, help="seconds per input")
    add("--max-len", type=int, default=10240, help="largest input, bytes")
    add("--rss-mb", type=int, default=2048, help="memory limit of an atheris child, MB")
    add("--real-limits", action="store_true",
        help="keep the real text limits (default: lowered for the hypnogram and metadata targets)")
    add("--max-restarts", type=int, default=20, help="most findings per target (atheris)")
    add("--json", type=Path, help="also write the summary here")
    add("--reproduce", type=Path, help="run --target once on this input file")
    add("--write-seeds", type=Path, help="(re)generate the seed corpus and dictionaries here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns 1 when a finding was made (or reproduced)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the parsers' warnings would drown the summary
    targets, make_seeds = _shared()
    if args.write_seeds:
        for p in make_seeds.write_seeds(args.write_seeds):
            print(f"{p.stat().st_size:6d} {p}")
        return 0
    chosen = TARGETS if args.target == "all" else (args.target,)
    if args.reproduce:
        targets.preload()
        for target in chosen:
            data, scratch = args.reproduce.read_bytes(), Path(tempfile.mkdtemp())
            try:
                targets.run_bounded(args.timeout, targets.RUNNERS[target], data, scratch)
            except (Exception, targets.Hang) as exc:
                print(f"{target}: FINDING {targets.describe(exc)['traceback']}")
                return 1
            print(f"{target}: the contract holds for {args.reproduce}")
        return 0
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
            print("atheris is not installed: random engine (pip install atheris for coverage)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="s2v-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {workdir}", flush=True)
    fuzz = fuzz_atheris if engine == "atheris" else fuzz_random
    results = [fuzz(t, args.seconds, args.corpus, workdir, args) for t in chosen]
    print_summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
