"""bench/bench_scale.py at a tiny size: its corpus has AgentTraj-L's shape, and its table has every stage at every size
(the timings themselves are the bench's business, not the test's)."""
import json
import re
import os
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_scale  # noqa: E402
import trajectory  # noqa: E402

STAGE_ROWS = ["read", "data", "random", "oracle", "complement", "tokenize", "train batches", "ppl batches", "analyze"]


def test_corpus_has_agenttraj_l_counts_and_is_the_same_at_every_size(tmp_path):
    full = bench_scale.counts_at(bench_scale.FULL)
    assert bench_scale.FULL == 14485 and full["webshop"] == 3930 and full["alfworld"] == 2420 and full["todo"] == 135
    assert full == {e: p[0] for e, p in bench_scale.PROFILE.items()}
    for n in (1, 11, 250, 1000):
        assert sum(bench_scale.counts_at(n).values()) == n
    small, large = bench_scale.write_corpus(tmp_path / "a", 30), bench_scale.write_corpus(tmp_path / "b", 120)
    for env, path in small.items():
        a, b = trajectory.read_records(path), trajectory.read_records(large[env])  # validated
        assert a == b[:len(a)]
        assert trajectory.split_item_id(a[0]["item_id"])[0] == env
    sql = trajectory.read_records(large["sqlgym"])
    assert all(len(trajectory.step_indices(r)) == 1 for r in sql)
    web = trajectory.read_records(large["webshop"])
    assert max(len(trajectory.step_indices(r)) for r in web) <= 10  # within WebShop's round limit


def test_bench_prints_every_stage_at_every_size(tmp_path):
    out = tmp_path / "scale.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_scale.py"), "--sizes", "20", "40",
                          "--latency", "0.05", "--rounds", "3", "--concurrency", "2", "--fault-every", "2",
                          "--tokenizer", str(tmp_path / "none"), "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    got = json.loads(out.read_text())
    assert got["sizes"] == [20, 40] and list(got["rows"]) == STAGE_ROWS
    for stage, by_n in got["rows"].items():
        assert sorted(by_n) == ["20", "40"], stage
        for r in by_n.values():
            assert r["seconds"] > 0 and r["peak_mib"] > 0 and r["cpu"] >= 0, (stage, r)
    assert got["rows"]["data"]["40"]["records"] < 40  # sqlgym is left out by the data stage
    assert got["rows"]["read"]["40"]["records"] == 40
    train = got["rows"]["train batches"]["40"]
    assert 0 <= train["padding_random"] < 1 and 0 <= train["padding_complete"] < 1
    (lat,) = got["latency"]
    assert lat["concurrency"] == 2 and lat["n"] == 6 and lat["requests"] > 6  # some 429s were retried
    lines = run.stdout.splitlines()
    for stage in STAGE_ROWS:  # one table row per stage and size; the second with its growth exponent
        rows = [l for l in lines if re.match(rf"{stage} +(20|40) ", l)]
        assert len(rows) == 2 and rows[0].split()[-1] == "-" and rows[1].split()[-3] != "-", (stage, rows)
    ratios = json.loads(lines[-1])["ratios"]
    assert "growth exponent of oracle's CPU time, N 20-40" in ratios and "oracle full pass hours at 2 in flight" in ratios
