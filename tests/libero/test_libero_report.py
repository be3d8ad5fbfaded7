"""Wilson intervals, record de-duplication across retries, the summary and the video timeline."""

import json

import numpy as np
import pytest

from aura.schedules import periodic_schedule, random_schedule
from sim.libero import report


def test_wilson_matches_reference_values():
    # Reference values from the closed form evaluated independently (z = 1.959964).
    lo, hi = report.wilson(5, 10)
    assert lo == pytest.approx(0.2365931, abs=1e-6) and hi == pytest.approx(0.7634069, abs=1e-6)
    lo, hi = report.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775328, abs=1e-6)
    lo, hi = report.wilson(50, 50)
    assert lo == pytest.approx(0.9286524, abs=1e-6) and hi == 1.0
    assert report.wilson(0, 0) == (0.0, 1.0)
    # exact ends for every n: 6/6 once gave hi = 0.9999999999999999 and a negative error bar in success.png
    assert all(report.wilson(n, n)[1] == 1.0 and report.wilson(0, n)[0] == 0.0 for n in range(1, 500))
    with pytest.raises(ValueError):
        report.wilson(3, 2)


def _rec(arm, init, status="ok", success=True, writes=0):
    return dict(task=0, init_state=init, arm=arm, seed=0, status=status, success=success, steps=100,
                writes=writes, bytes=writes * 4224, wall_s=1.0)  # fmt: skip


def test_summary_counts_each_episode_once_and_keeps_failures_visible(tmp_path):
    recs = [
        _rec("aura", 0, status="error", success=False),
        _rec("aura", 0, writes=4),  # the retry that succeeded
        _rec("aura", 1, success=False, writes=6),
        _rec("base", 0),
        _rec("base", 1, status="error", success=False),  # never recovered
    ]
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + '\n{"task": 0, "init_st')  # torn last line
    got = report.read_records([path])
    assert len(got) == 5
    s = report.write_summary(got, tmp_path)
    rows = {(r["arm"], r["task"]): r for r in s["rows"]}
    assert rows[("aura", "all")]["episodes"] == 2 and rows[("aura", "all")]["successes"] == 1
    assert rows[("aura", "all")]["writes"] == 5.0 and rows[("aura", "all")]["bytes"] == 5 * 4224
    assert rows[("base", "all")]["episodes"] == 1 and rows[("base", "all")]["failed"] == 1
    assert (tmp_path / "summary.md").read_text().count("| aura |") == 2
    assert (tmp_path / "success.png").stat().st_size > 1000
    assert (tmp_path / "writes.png").stat().st_size > 1000


def test_base_only_summary_has_no_writes_plot(tmp_path):
    report.write_summary([_rec("base", 0), _rec("base", 1, success=False)], tmp_path)
    assert (tmp_path / "success.png").exists() and not (tmp_path / "writes.png").exists()


def test_budget_schedules_spend_exactly_the_budget():
    rng = np.random.default_rng(0)
    for n, horizon in [(0, 50), (7, 50), (50, 50), (60, 50)]:
        r, p = random_schedule(n, horizon, rng), periodic_schedule(n, horizon)
        assert len(set(r.tolist())) == len(r) == min(n, horizon)
        assert len(set(p.tolist())) == len(p) == min(n, horizon)
        assert all(0 <= s < horizon for s in [*r, *p])


def test_timeline_marks_writes_up_to_the_cursor():
    frame = np.zeros((8, 100, 3), np.uint8)
    out = report.timeline_frame(frame, t=50, horizon=101, write_steps=[10, 80])
    assert out.shape == (20, 100, 3)
    strip = out[8:]
    assert tuple(strip[-1, 10]) == (230, 40, 40)  # a past write
    assert tuple(strip[-1, 80]) == (60, 60, 60)  # a future write is not shown yet
    assert tuple(strip[0, 50]) == (255, 255, 255)  # the cursor


def test_video_has_every_frame_and_the_timeline_strip(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg (sim extra) for MP4")
    frames = [np.full((32, 48, 3), 10 * i, np.uint8) for i in range(6)]
    path = tmp_path / "ep.mp4"
    report.write_video(path, frames, write_steps=[2, 4])
    back = imageio.mimread(path)
    assert len(back) == 6 and back[0].shape == (32 + 12, 48, 3)


def test_contact_sheet_tiles_evenly_spaced_frames_over_their_timelines(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    frames = [np.full((8, 10, 3), i, np.uint8) for i in range(23)]
    path = report.write_contact_sheet(tmp_path / "ep.png", frames, write_steps=[5], n=8, cols=3)
    sheet = iio.imread(path)[..., :3]
    assert sheet.shape == (3 * (8 + 12), 3 * 10, 3)  # 8 tiles in rows of 3, the ninth blank
    want = [0, 3, 6, 9, 13, 16, 19, 22]  # first and last included
    for k, i in enumerate(want):
        r, c = divmod(k, 3)
        tile = sheet[r * 20 : r * 20 + 20, c * 10 : c * 10 + 10]
        np.testing.assert_array_equal(tile[:8], i)
        np.testing.assert_array_equal(tile[8:], report.timeline_frame(frames[i], i, 23, [5])[8:])
    assert not sheet[40:, 20:].any()
    assert len(iio.imread(report.write_contact_sheet(tmp_path / "s.png", frames[:2], []))) == 20  # n > frames


def test_video_without_imageio_ffmpeg_uses_opencv(tmp_path, monkeypatch):
    """The GPU machines have OpenCV but not imageio-ffmpeg: the same MP4 (frames + timeline) via OpenCV."""
    import importlib.util

    pytest.importorskip("cv2", reason="needs opencv-python-headless (the GPU machines' video encoder)")
    iio = pytest.importorskip("imageio.v3")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "imageio_ffmpeg" else real(n, *a)
    )
    frames = [np.full((32, 32, 3), 8 * i, np.uint8) for i in range(12)]
    report.write_video(tmp_path / "v.mp4", frames, write_steps=[3, 7])
    video = iio.imread(tmp_path / "v.mp4")
    assert video.shape[0] == 12 and video.shape[2] == 32 and video.shape[1] > 32  # timeline strip below
