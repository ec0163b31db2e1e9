"""The report (report.py; evaluate.py --report): Tables 2, 3 and 6 from labelled result files, rows from the
results' selection, episode counts per cell, Wilson intervals checked by hand, AVG only over a full split, charts
on a fixed 0-100 axis, and one line for bad result files."""
import json
import subprocess
import sys

import pytest

import evaluate
import report
import scores
from tests.conftest import ROOT

ENVS = scores.HELD_IN + scores.HELD_OUT


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def episodes(label, env, successes, n, start=False, **extra):
    """n results of `env` under `label`, the first `successes` of them solved (reward 1 / 0)."""
    rows = []
    for i in range(n):
        ok = int(i < successes)
        reward = 100.0 * ok if env == "sciworld" else float(ok)
        rows.append({"item_id": f"{env}_{i}", "env": env, "task_id": i, "reward": reward, "success": ok,
                     "label": label, **extra})
    return rows


def run_report(tmp_path, files, *extra):
    return report.report(report.get_args([*files, "--report-png", str(tmp_path / "t.png"), *extra]))


def test_wilson_by_hand():
    # 12 of 25 (the paper's Maze 48.00): p = 0.48, z = 1.96; centre (p + z^2/2n) / (1 + z^2/n) = 0.48266,
    # half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) = 0.18235 -> [30.03, 66.50]
    lo, hi = scores.wilson(12, 25)
    assert lo == pytest.approx(30.03, abs=0.01) and hi == pytest.approx(66.50, abs=0.01)
    # 0 of 25: [0, z^2 / (n + z^2)] = [0, 3.8415 / 28.8415] = [0, 13.32]
    lo, hi = scores.wilson(0, 25)
    assert lo == pytest.approx(0.0, abs=1e-9) and hi == pytest.approx(13.32, abs=0.01)
    # 48 vs 44 on 25 games: the intervals overlap almost entirely
    assert scores.wilson(11, 25)[1] > scores.wilson(12, 25)[0]


def test_mean_reward_intervals_stay_within_the_scores_that_can_occur():
    # babyai rewards 0, 0, 0, 1 (x100): mean 25, s = 50, 25 -+ 1.96 * 50 / 2 = [-24.0, 74.0] -> cut at 0
    c = scores.cell("babyai", [{"reward": r, "success": int(r == 1)} for r in (0, 0, 0, 1)])
    assert c["score"] == 25.0 and c["ci"] == pytest.approx((0.0, 74.0), abs=0.01)
    # rewards 1, 1, 1, 0 -> 75 -+ 49.0 = [26.0, 124.0] -> cut at 100
    assert scores.cell("babyai", [{"reward": r, "success": r} for r in (1, 1, 1, 0)])["ci"] == \
        pytest.approx((26.0, 100.0), abs=0.01)
    # ScienceWorld scores go negative: -100, 100 -> 0 -+ 1.96 * 141.42 / 1.414 = [-196, 196] -> [-100, 100]
    sci = scores.cell("sciworld", [{"reward": r, "success": int(r == 100)} for r in (-100.0, 100.0)])
    assert sci["ci"] == pytest.approx((-100.0, 100.0), abs=0.01)
    assert scores.average([c, sci])["ci"][0] >= -100.0 and scores.average([c, c])["ci"][0] >= 0.0


def test_tables_2_and_3_rows_counts_intervals(tmp_path, capsys):
    # every env of the paper's split, 20 episodes each; label -> solved of 20 in every env
    solved = {"complete": 10, "noncritical@0.3": 8, "critical@0.3": 12, "critical@0.1": 9, "random@0.3": 11,
              "random@0.1": 7, "base": 3, "my-model": 5}
    rows = [r for label, k in solved.items() for env in ENVS for r in episodes(label, env, k, 20)]
    # random@0.2 has held-in envs only, one missing: no AVG at all, a partial one marked 9/10
    rows += [r for env in scores.HELD_IN[:-1] for r in episodes("random@0.2", env, 6, 20)]
    out = run_report(tmp_path, [write(tmp_path / "r.jsonl", rows)])
    text = capsys.readouterr().out
    assert list(out["table2"]) == ["noncritical@0.3", "complete", "critical@0.3"]
    t3 = out["table3"]
    assert list(t3) == ["complete", "random@0.3", "random@0.2", "random@0.1", "critical@0.3", "critical@0.1"]
    c = t3["critical@0.3"]["in"]
    # a 0/1 reward in every env: each column is 60 % (Babyai and Sciworld as mean rewards), the AVG too
    assert c["score"] == pytest.approx(60.0) and c["n"] == 10 * 20
    assert t3["critical@0.3"]["out"]["n"] == 4 * 20 and t3["critical@0.3"]["out"]["score"] == pytest.approx(60.0)
    lo, hi = c["ci"]
    assert lo < 60.0 < hi and hi - lo < scores.wilson(12, 20)[1] - scores.wilson(12, 20)[0]  # 10 columns
    assert t3["random@0.2"]["in"] is None and t3["random@0.2"]["part_in"]["of"] == (9, 10)
    assert t3["random@0.2"]["out"] is None and t3["random@0.2"]["part_out"] is None
    cell = out["table1"]["critical@0.3"]["maze"]
    assert cell["n"] == 20 and cell["ci"] == pytest.approx(scores.wilson(12, 20))
    assert out["table1"]["critical@0.3"]["babyai"]["kind"] == "mean"
    # the printed tables: Table 3's rows in the paper's order with the number of episodes per cell
    lines = text.splitlines()
    t3_lines = lines[lines.index(next(l for l in lines if l.startswith("Table 3"))) + 2:][:6]
    assert [l.split()[:2] for l in t3_lines] == [["Complete", "100%"], ["Random", "30%"], ["Random", "20%"],
                                                ["Random", "10%"], ["Critical", "30%"], ["Critical", "10%"]]
    assert "n=200" in t3_lines[4] and "n=80" in t3_lines[4] and "held-in 30.00 (9/10)" in t3_lines[2]
    assert "labels outside the --label convention (Table 1 only): my-model" in text
    assert "Table 2" in text and "Table 6" not in text


def test_table6_rule_and_the_other_rule(tmp_path, capsys):
    # three maze tasks; scratch: only C solved; restarts: A 1 of 3, B 1 of 1, C 0 of 2
    plan = {"A": (0, [1, 0, 0]), "B": (0, [1]), "C": (1, [0, 0])}
    rows = []
    for t, (task, (scratch, restarts)) in enumerate(plan.items()):
        base = {"item_id": f"maze_{t}", "env": "maze", "task_id": t, "label": "base"}
        rows.append({**base, "reward": float(scratch), "success": scratch, "start": None, "rounds": 5,
                     "replayed": 0, "episode": f"maze_{t}@scratch"})
        for j, ok in enumerate(restarts):
            c = 3 + 2 * j
            rows.append({**base, "reward": float(ok), "success": ok, "start": c, "rounds": 6, "replayed": j + 1,
                         "episode": f"maze_{t}@{c}"})
    rows.append({**rows[-1], "start": 9, "rounds": 4, "replayed": 4, "episode": "maze_2@9"})  # ended in replay
    out = run_report(tmp_path, [write(tmp_path / "t6.jsonl", rows)])
    c = out["table6"]["base"]["maze"]
    assert c["tasks"] == 3 and c["scratch"]["n"] == 3 and c["scratch"]["score"] == pytest.approx(100 / 3)
    assert c["critical"]["n"] == 7 and c["critical"]["score"] == pytest.approx(200 / 7)  # mean over restarts
    assert c["best"]["n"] == 3 and c["best"]["score"] == pytest.approx(200 / 3)          # per-task any
    assert c["critical"]["ci"] == pytest.approx(scores.wilson(2, 7))
    assert c["replay_only"] == 1
    assert out["table1"] == {}  # --from-critical episodes never enter Table 1
    text = capsys.readouterr().out
    assert "mean over all restart episodes" in text and "per-task best" in text
    row = next(l for l in text.splitlines() if l.startswith("base") and "Maze" in l)
    assert "33.33" in row and "28.57" in row and "66.67" in row and "n=7" in row


def test_charts_fixed_axis_even_when_all_zero(tmp_path):
    rows = episodes("base", "maze", 0, 5) + episodes("base", "wordle", 0, 5)
    rows += [{**r, "start": None, "episode": f"{r['item_id']}@scratch"} for r in episodes("base", "maze", 0, 2)]
    out = run_report(tmp_path, [write(tmp_path / "z.jsonl", rows)])
    assert set(out["charts"]) == {str(tmp_path / "t.png"), str(tmp_path / "t_table6.png")}
    for ylim in out["charts"].values():
        assert ylim == (0.0, 100.0)


@pytest.mark.parametrize("content,message", [
    ('[{"item_id": "maze_0", "env": "maze", "reward": 1, "success": 1}]', "line 1: not a result line (a list"),
    ('{"item_id": "maze_0", "env": "maze", "reward": 1, "success": null}\n', "line 1: 'success' must be 0 or 1"),
    ('{"item_id": "maze_0", "env": "maze", "reward": null, "success": 1}\n', "line 1: 'reward' must be a number"),
    ('{"item_id": "maze_0", "env": "maze", "reward": 1, "success": 1}\n\n'
     '{"item_id": "maze_0", "env": "maze", "reward": 0, "success": 0}\n', "line 3: episode 'maze_0' of label 'r' "
                                                                       "is already at"),
    ('{"env": "maze", "reward": 1, "success": 1}\n', "line 1: not a result line ('item_id'"),
    ('\xff\n', "not UTF-8"),
    ('[' * 100000 + '\n', "line 1: not valid JSON (nested too deeply)"),
])
def test_bad_result_files_one_line(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content.encode("latin-1") if content == "\xff\n" else content.encode())
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--report", str(path), "--report-png", str(tmp_path / "t.png")])
    assert message in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)
    assert not (tmp_path / "t.png").exists()


def test_report_cli_folder_and_duplicate_across_files(tmp_path):
    a = write(tmp_path / "a.jsonl", episodes("critical@0.3", "maze", 1, 2))
    b = write(tmp_path / "b.jsonl", episodes("critical@0.3", "maze", 1, 1))
    for files, message in (([a, b], "b.jsonl: line 1: episode 'maze_0' of label 'critical@0.3' is already at"),
                           ([str(tmp_path)], "is a folder")):
        for prog in (["evaluate.py", "--report"], ["report.py"]):  # the two commands of the report
            run = subprocess.run([sys.executable, *prog, *files, "--report-png", str(tmp_path / "t.png")],
                                 cwd=ROOT, capture_output=True, text=True)
            assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
            assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
            assert run.stderr.startswith(f"{prog[0]}: ") and not (tmp_path / "t.png").exists()


def test_rows_come_from_the_results_selection(tmp_path, capsys):
    # a new selector's rows (its records' selection.method) are rows of their own in Tables 1 and 3; ATLaS's
    # oracle selection under a label outside the convention is Table 3's Critical row at its ratio
    rows = [r for env in ("maze", "wordle") for r in episodes("toy@0.3", env, 3, 5,
                                                              selection={"method": "toy", "ratio": 0.3})]
    rows += [r for env in ("maze", "wordle") for r in episodes("my-atlas", env, 4, 5,
                                                               selection={"method": "oracle", "ratio": 0.2,
                                                                          "model": "gpt-4o"})]
    rows += episodes("my-model", "maze", 1, 5)
    out = run_report(tmp_path, [write(tmp_path / "r.jsonl", rows)])
    text = capsys.readouterr().out
    assert {"toy@0.3", "my-atlas", "my-model"} <= set(out["table1"])
    assert list(out["table3"]) == ["toy@0.3", "my-atlas"]
    lines = text.splitlines()
    t3 = lines[lines.index(next(l for l in lines if l.startswith("Table 3"))) + 2:][:2]
    assert [l.split()[:2] for l in t3] == [["Toy", "30%"], ["Critical", "20%"]]
    assert "labels outside the --label convention (Table 1 only): my-model" in text  # no selection, no convention


def test_one_row_one_selection(tmp_path):
    a = write(tmp_path / "a.jsonl", episodes("mine", "maze", 1, 2, selection={"method": "toy", "ratio": 0.3}))
    b = write(tmp_path / "b.jsonl", [{**r, "item_id": f"maze_{i + 5}"} for i, r in
                                     enumerate(episodes("mine", "maze", 1, 2, selection={"method": "toy",
                                                                                          "ratio": 0.1}))])
    with pytest.raises(SystemExit) as e:
        report.main([a, b, "--report-png", str(tmp_path / "t.png")])
    assert "b.jsonl: line 1: label 'mine' has the selection ('toy', 0.1, None)" in str(e.value)
    assert "a.jsonl: line 1" in str(e.value) and "\n" not in str(e.value)
