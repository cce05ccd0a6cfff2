"""Memory of the app server under many uploads from several concurrent sessions.

Starts ``streamlit run app.py`` on a free loopback port, opens ``--sessions`` browserless sessions
(``tests/app_session.py``: the websocket protocol the browser speaks, XSRF included) and has
them upload ``--uploads`` distinct generated recordings (EDF+ with an expert hypnogram) in turn,
each going through the Night, Hypnogram and Export pages (read, stage, export). After every
upload it prints the server's resident memory; at the end it closes the sessions, waits for the
server to drop them (``--ttl`` seconds, Streamlit's ``server.disconnectedSessionTTL``) and
prints the memory again, with the ratio of the final figure to the one after the first upload.

It also checks, after every upload, that the session shows its own night (duration and epochs of
the file it uploaded) and that no ``s2v-upload-*`` / ``s2v-hdr-*`` folder is left in the server's
temporary folder.

Usage::

    python bench/bench_app_sessions.py                       # 20 uploads of 1-h nights, 2 sessions
    python bench/bench_app_sessions.py --uploads 6 --hours 0.5 --sessions 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from app_session import AppSession, memory_metrics, start_server, stop_server  # noqa: E402

PSG_LABEL = "EDF / EDF+ / BDF, WFDB, DREAMS text, FIF, BrainVision or EEGLAB recording (all files of one record at once)"
HYP_LABEL = "Hypnogram (optional): Sleep-EDF/EDF+, NSRR or Profusion XML, CSV/TSV, DREAMS, WFDB"
SITES = ("us_hospital", "eu_clinic", "eu_research", "home_test")


def make_recordings(n: int, hours: float, folder: Path, seed: int) -> list[dict]:
    """``n`` distinct nights (different subjects and sites), generated once into ``folder``."""
    import pandas as pd

    from s2v_core.synth.cohort import generate_cohort

    meta = folder / "metadata.csv"
    if not meta.exists() or len(pd.read_csv(meta)) != n:
        generate_cohort(n, folder, seed=seed, hours=hours, sites=list(SITES), progress=True)
    out = []
    for row in pd.read_csv(meta).itertuples():
        psg, hyp = folder / row.psg_file, folder / row.hypnogram_file
        out.append({"psg": psg, "hyp": hyp, "epochs": str(int(round(row.hours * 120)))})
    return out


def rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for pat in ("s2v-upload-*", "s2v-hdr-*") for p in tmp.glob(pat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--sessions", type=int, default=2, help="sessions held open at once")
    ap.add_argument("--hours", type=float, default=1.0, help="length of each generated night")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", default=None, help="keeps the generated nights between runs")
    ap.add_argument("--ttl", type=int, default=5, help="server.disconnectedSessionTTL (s)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of the server, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-sessions-"))
    data = work / f"nights-{args.uploads}x{args.hours:g}h-s{args.seed}"
    recs = make_recordings(args.uploads, args.hours, data, args.seed)
    mb = sum(r["psg"].stat().st_size for r in recs) / 2**20
    print(f"{len(recs)} recordings, {mb:.0f} MB in all, in {data}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-tmp-"))
    env = dict(item.split("=", 1) for item in args.env)
    proc, url = start_server({**env, "TMPDIR": str(tmp)}, log_path=work / "streamlit.log",
                             options={"server.disconnectedSessionTTL": str(args.ttl)})
    server = psutil.Process(proc.pid)
    rows: list[dict] = []
    try:
        sessions = [AppSession(url, timeout=600).__enter__() for _ in range(args.sessions)]
        for s in sessions:
            s.rerun()
            s.set_radio("Recording", "Upload a recording")
            s.rerun()
        base = rss_mb(server)
        print(f"server RSS with {len(sessions)} idle sessions: {base:.0f} MB")
        print(f"{'upload':>6} {'session':>7} {'epochs':>6} {'seconds':>7} {'RSS MB':>7} {'uploads held MB':>15} "
              f"{'st.cache_data MB':>16}")
        for i, rec in enumerate(recs):
            s = sessions[i % len(sessions)]
            t0 = time.perf_counter()
            s.rerun("night")
            s.upload(PSG_LABEL, rec["psg"].name, rec["psg"].read_bytes())
            s.upload(HYP_LABEL, rec["hyp"].name, rec["hyp"].read_bytes())
            night = s.rerun()
            hyp = s.rerun("hypnogram")
            export = s.rerun("export")
            problems = [*night.errors, *night.exceptions, *hyp.errors, *hyp.exceptions, *export.errors,
                        *export.exceptions]
            if problems or not export.of("download_button"):
                raise SystemExit(f"upload {i + 1}: a page failed: {problems or export.text[:500]}")
            s.download("Hypnogram CSV (onset, duration, label; opens in EDFbrowser)")
            seconds = time.perf_counter() - t0
            if night.metrics.get("Epochs (30 s)") != rec["epochs"] or problems:
                raise SystemExit(f"upload {i + 1}: wrong or failed page: {night.metrics} {problems}")
            left = leftovers(tmp)
            if left:
                raise SystemExit(f"upload {i + 1}: temporary folders left behind: {left}")
            held = memory_metrics(url)
            rows.append({"upload": i + 1, "session": i % len(sessions), "epochs": int(rec["epochs"]),
                         "seconds": round(seconds, 2), "rss_mb": round(rss_mb(server), 1),
                         "uploads_held_mb": round(held.get("UploadedFileManager:", 0) / 2**20, 1),
                         "cache_data_mb": round(sum(v for k, v in held.items() if k.startswith("st_cache_data:"))
                                                / 2**20, 1)})
            r = rows[-1]
            print(f"{r['upload']:>6} {r['session']:>7} {r['epochs']:>6} {r['seconds']:>7.1f} {r['rss_mb']:>7.0f} "
                  f"{r['uploads_held_mb']:>15.1f} {r['cache_data_mb']:>16.1f}", flush=True)
        for s in sessions:
            s.close()
        time.sleep(args.ttl + 10)  # the server drops disconnected sessions (and their files) after the TTL
        closed = rss_mb(server)
    finally:
        stop_server(proc)
    first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    peak = max(r["rss_mb"] for r in rows)
    summary = {"uploads": len(rows), "sessions": args.sessions, "hours": args.hours, "upload_mb_total": round(mb),
               "server_env": env,
               "rss_idle_mb": round(base, 1), "rss_after_first_mb": first, "rss_final_mb": last,
               "rss_peak_mb": peak, "uploads_held_final_mb": rows[-1]["uploads_held_mb"],
               "largest_upload_mb": round(max(r["psg"].stat().st_size for r in recs) / 2**20, 1), "rss_after_close_mb": round(closed, 1), "final_over_first": round(last / first, 3),
               "seconds_per_upload": round(sum(r["seconds"] for r in rows) / len(rows), 2),
               "temp_folders_left": leftovers(tmp), "rows": rows}
    print(f"RSS after the first upload {first:.0f} MB, after upload {len(rows)} {last:.0f} MB "
          f"(final/first {last / first:.2f}), peak {peak:.0f} MB, "
          f"after the sessions closed {closed:.0f} MB; temporary folders left: {len(summary['temp_folders_left'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
