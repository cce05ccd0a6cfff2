from s2v_core.modalities import MODALITIES
from s2v_core.recording.loading import load_night
from s2v_core.shipped import SAMPLE_DIR, shipped_night
from s2v_core.synth.cohort import full_sample_night


def test_shipped_sample_is_small_and_complete():
    total = sum(f.stat().st_size for f in SAMPLE_DIR.rglob("*") if f.is_file())
    assert total < 10 * 2**20
    psg, hyp = shipped_night()
    night = load_night(psg, hyp)
    assert night.modalities == MODALITIES
    assert night.n_epochs == 120 and (night.stages >= 0).all()


def test_full_sample_night_is_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("S2V_CACHE", str(tmp_path))
    psg, hyp = full_sample_night(hours=0.25)
    mtime = psg.stat().st_mtime_ns
    again, _ = full_sample_night(hours=0.25)
    assert again == psg and again.stat().st_mtime_ns == mtime
    assert load_night(psg, hyp).n_epochs == 30
