import json

import pandas as pd

from s2v_core.cli.main import main


def test_synth_then_info(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["synth", "--nights", "2", "--out", str(out), "--seed", "3", "--hours", "0.2", "--quiet"]) == 0
    meta = pd.read_csv(out / "metadata.csv")
    assert len(meta) == 2 and set(meta.columns) >= {"night", "subject", "site", "age", "sex", "ahi"}
    capsys.readouterr()
    row = meta.iloc[0]
    assert main(["info", str(out / row.psg_file), "--hypnogram", str(out / row.hypnogram_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_epochs"] == 24 and info["stage_counts"]["unscored"] == 0


def test_bad_map_argument(tmp_path, capsys):
    assert main(["info", str(tmp_path / "x.edf"), "--map", "eeg"]) == 2
    assert "MODALITY=CHANNEL" in capsys.readouterr().err


def test_missing_file_is_clear(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.edf")]) == 2
    assert "missing.edf: file not found" in capsys.readouterr().err
