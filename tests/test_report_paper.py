"""The report's Tables 4, 5, 7 and Figure 2, and the paper's own numbers beside ours in every table: rows grouped by
backbone and scope (single-task models), the main backbone, cells and differences checked by hand. Small result
files written here, no models."""
import json
import os

import pytest

import paper_numbers as P
import report
import scores

LLAMA, MISTRAL = "Llama-3.1-8B-Instruct", "Mistral-7B-Instruct-v0.3"
ENVS = scores.HELD_IN + scores.HELD_OUT


def episodes(label, env, rewards, backbone=None, selection=None, first=0):
    """One result line per reward (0..1; x100 for sciworld), success = full reward, item ids from `first` on."""
    rows = []
    for i, reward in enumerate(rewards, first):
        ok = int(reward >= 1)
        row = {"item_id": f"{env}_{i}", "env": env, "task_id": i, "reward": 100.0 * reward if env == "sciworld"
               else float(reward), "success": ok, "label": label}
        if backbone is not None:
            row["backbone"] = backbone
        if selection is not None:
            row["selection"] = selection
        rows.append(row)
    return rows


def sel(method, ratio, model, envs, backbone=None):
    return {"method": method, "ratio": ratio, "model": model, "n_records": 10, "backbone": backbone,
            "train_envs": envs}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run_report(tmp_path, rows, *extra):
    path = write(tmp_path / "r.jsonl", rows)
    return report.report(report.get_args([path, "--report-png", str(tmp_path / "t.png"), *extra]))


def section(text, title):
    """The printed lines of one table: from its title to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.fixture
def two_backbones():
    """Llama (the main backbone: three multi-task rows) and Mistral (two), plus Llama's single-task models on
    BabyAI and Weather: ATLaS by GPT-4o and by Llama-3.1-70B, and the value function. Four of them carry the label
    critical@0.3 (evaluate.py's default name), as do both backbones' multi-task ATLaS rows."""
    multi = sel("oracle", 0.3, "gpt-4o", sorted(scores.HELD_IN))
    rows = []
    for env in ENVS:  # Llama complete: 2 of 4 solved everywhere (50); critical@0.3: 3 of 4 (75)
        rows += episodes("complete", env, [1, 1, 0, 0], LLAMA, sel("complete", 1.0, None, sorted(scores.HELD_IN)))
        rows += episodes("critical@0.3", env, [1, 1, 1, 0], LLAMA, multi)
    rows += episodes("random@0.3", "maze", [1, 0], LLAMA, sel("random", 0.3, None, sorted(scores.HELD_IN)))
    rows += episodes("complete", "maze", [1, 0, 0, 0], MISTRAL, sel("complete", 1.0, None, ["maze", "wordle"]))
    rows += episodes("complete", "wordle", [1, 1, 1, 0], MISTRAL, sel("complete", 1.0, None, ["maze", "wordle"]))
    rows += episodes("critical@0.3", "maze", [1, 1, 0, 0], MISTRAL, sel("oracle", 0.3, "gpt-4o", ["maze", "wordle"]))
    rows += episodes("base", "maze", [0, 0], MISTRAL)  # a Mistral row outside Table 7's layout
    gpt, big = "gpt-4o", "meta-llama/Llama-3.1-70B-Instruct"
    # BabyAI: mean reward x100; GPT-4o 1, .5, 0, .5 -> 50.00; Llama-70B 1, 0, 0, 0 -> 25.00; value .5 .5 -> 50.00
    rows += episodes("critical@0.3", "babyai", [1, .5, 0, .5], LLAMA, sel("oracle", 0.3, gpt, ["babyai"]))
    rows += episodes("critical@0.3", "babyai", [1, 0, 0, 0], LLAMA, sel("oracle", 0.3, big, ["babyai"]))
    rows += episodes("value", "babyai", [.5, .5], LLAMA, sel("value", None, None, ["babyai"]))
    # Weather: success rates; GPT-4o 3 of 4 -> 75.00; Llama-70B 1 of 4 -> 25.00; value 1 of 2 -> 50.00
    rows += episodes("critical@0.3", "weather", [1, 1, 1, 0], LLAMA, sel("oracle", 0.3, gpt, ["weather"]))
    rows += episodes("critical@0.3", "weather", [1, 0, 0, 0], LLAMA, sel("oracle", 0.3, big, ["weather"]))
    rows += episodes("value", "weather", [1, 0], LLAMA, sel("value", None, None, ["weather"]))
    # the BabyAI GPT-4o model also played 3 Maze tasks: in no table, counted
    rows += episodes("critical@0.3", "maze", [1, 1, 1], LLAMA, sel("oracle", 0.3, gpt, ["babyai"]), first=50)
    return rows


def test_tables_4_and_5_single_task_rows_beside_the_paper(tmp_path, capsys, two_backbones):
    out = run_report(tmp_path, two_backbones)
    text = capsys.readouterr().out
    assert out["backbone"] == LLAMA  # three multi-task rows against Mistral's three: ties go by name, Llama first
    t4 = {(r["env"], r["method"], r["selector"]): r for r in out["table4"][LLAMA]}
    big = "meta-llama/Llama-3.1-70B-Instruct"
    assert list(t4) == [("babyai", "ATLaS", "gpt-4o"), ("babyai", "ATLaS", big), ("babyai", "Value Func.", None),
                        ("weather", "ATLaS", "gpt-4o"), ("weather", "ATLaS", big), ("weather", "Value Func.", None)]
    a = t4[("babyai", "ATLaS", "gpt-4o")]
    assert a["cell"]["score"] == pytest.approx(50.0) and a["cell"]["n"] == 4  # on BabyAI only: not the 3 Maze ones
    assert a["paper"] == 78.93 and a["diff"] == pytest.approx(50.0 - 78.93)
    v = t4[("weather", "Value Func.", None)]
    assert v["cell"]["score"] == pytest.approx(50.0) and v["paper"] == 60.00 and v["diff"] == pytest.approx(-10.0)
    assert t4[("babyai", "ATLaS", big)]["paper"] is None  # the paper's Table 4 ATLaS is GPT-4o's
    t5 = out["table5"][LLAMA]
    cells = {(r["env"], r["selector"]): r for r in t5["rows"]}
    assert set(cells) == {(e, m) for e in ("babyai", "weather") for m in ("gpt-4o", big)}
    w = cells[("weather", big)]
    assert w["cell"]["score"] == pytest.approx(25.0) and w["paper"] == 55.00 and w["diff"] == pytest.approx(-30.0)
    assert cells[("babyai", big)]["paper"] == 67.23
    avg = {r["selector"]: r for r in t5["average"]}
    # GPT-4o: (50 + 75) / 2 = 62.50; the paper's (78.93 + 60.00) / 2 = 69.465
    assert avg["gpt-4o"]["cell"]["score"] == pytest.approx(62.5) and avg["gpt-4o"]["cell"]["n"] == 8
    assert avg["gpt-4o"]["paper"] == pytest.approx(69.465) and avg["gpt-4o"]["diff"] == pytest.approx(-6.965)
    # the printed tables: the paper's layout (a task, then a line per method / selector)
    t4_lines = section(text, "Table 4")
    row = next(line for line in t4_lines if line.startswith("Babyai"))
    assert row.split() == ["Babyai", "ATLaS", "gpt-4o", "30%", "50.00", row.split()[5], "4", "78.93", "-28.93"]
    assert any(line.split()[:2] == ["Value", "Func."] and "60.00" in line and "-10.00" in line for line in t4_lines)
    t5_lines = section(text, "Table 5")
    weather = next(i for i, line in enumerate(t5_lines) if line.startswith("Weather"))
    assert t5_lines[weather].split()[1] == "gpt-4o" and t5_lines[weather + 1].split()[0] == big
    assert t5_lines[weather + 1].split()[-2:] == ["55.00", "-30.00"]
    average = next(line for line in t5_lines if line.startswith("Average "))
    assert average.split()[:3] == ["Average", "gpt-4o", "30%"] and average.split()[-2:] == ["69.47", "-6.97"]
    assert "episodes on an env they were not trained on (in no table): 3" in text
    # single-task rows never enter Tables 1-3: Llama's critical@0.3 there is the multi-task one (75 on maze)
    assert out["table1"]["critical@0.3"]["maze"]["score"] == pytest.approx(75.0)
    assert out["table1"]["critical@0.3"]["babyai"]["n"] == 4
    assert set(out["table1"]) == {"complete", "critical@0.3", "random@0.3"}


def test_table7_and_figure2_per_backbone(tmp_path, capsys, two_backbones):
    out = run_report(tmp_path, two_backbones)
    text = capsys.readouterr().out
    # Table 7: the other backbones first, the main one last (the paper: Mistral, Qwen, then Llama's sweeps)
    assert list(out["table7"]) == [MISTRAL, LLAMA]
    assert list(out["table7"][LLAMA]) == ["complete", "random@0.3", "critical@0.3"]
    m = out["table7"][MISTRAL]
    assert list(m) == ["complete", "critical@0.3"]  # its base row is in no table, and said so
    assert m["complete"]["maze"]["score"] == pytest.approx(25.0) and m["complete"]["wordle"]["score"] == 75.0
    pm = out["paper"]["table7"][MISTRAL]
    assert pm["complete"]["maze"] == 44.00 and pm["critical@0.3"]["maze"] == 40.00  # Table 7's Mistral rows
    assert out["paper"]["table7"][LLAMA]["random@0.3"]["maze"] == 40.00
    assert out["paper"]["table7"][LLAMA]["complete"]["maze"] == 48.00  # Table 7 has none: Table 1's AgentTraj-L
    t7 = section(text, "Table 7")
    start = t7.index(f" {MISTRAL}")
    ours, paper, diff = t7[start + 1:start + 4]
    maze = scores.HELD_IN.index("maze") + 1  # the first word is the row's name
    assert ours.split()[0] == "complete" and ours.split()[maze] == "25.00"
    assert paper.split()[:2] == ["paper", "79.50"] and paper.split()[maze] == "44.00"  # Alfworld, ..., Maze
    assert diff.split()[:3] == ["ours", "-", "paper"] and diff.split()[maze + 2] == "-19.00"
    assert "rows of other backbones in no table" in text and f"base [{MISTRAL}]" in text
    # Figure 2: Llama's held-in AVG over its 10 columns (complete 50 everywhere) against the paper's 60.52
    fig = out["figure2"]
    assert list(fig) == [LLAMA, MISTRAL]
    c = fig[LLAMA]["complete"]
    assert c["in"]["score"] == pytest.approx(50.0) and c["paper_in"] == 60.52 and c["diff_in"] == pytest.approx(-10.52)
    a = fig[LLAMA]["critical@0.3"]
    assert a["out"]["score"] == pytest.approx(75.0) and a["paper_out"] == 38.36
    assert a["diff_out"] == pytest.approx(75.0 - 38.36)
    mc = fig[MISTRAL]["complete"]  # two of ten held-in columns: a partial average, no difference to the AVG
    assert mc["in"]["of"] == (2, 10) and mc["in"]["score"] == pytest.approx(50.0) and mc["diff_in"] is None
    assert mc["paper_in"] == 57.83 and mc["out"] is None
    lines = section(text, "Figure 2")
    assert any(line.split()[:5] == [LLAMA, "complete", "50.00", "60.52", "-10.52"] for line in lines)
    assert any(line.split()[:6] == [MISTRAL, "complete", "50.00", "(2/10)", "57.83", "-"] for line in lines)
    png = str(tmp_path / "t_figure2.png")
    assert os.path.getsize(png) > 0 and out["charts"][png] == (0.0, 100.0)


def test_tables_1_to_3_use_the_main_backbone_and_its_paper_numbers(tmp_path, capsys, two_backbones):
    out = run_report(tmp_path, two_backbones)
    text = capsys.readouterr().out
    assert out["paper"]["table1"]["critical@0.3"]["sciworld"] == 42.02  # Table 1 prints 42.02, Table 2 42.01
    assert out["paper"]["table3"]["critical@0.3"] == (65.91, 38.36)
    assert out["table3"]["critical@0.3"]["in"]["score"] == pytest.approx(75.0)
    t1 = section(text, "Table 1")
    assert t1[0] == f"Table 1: held-in and held-out environments (backbone {LLAMA})"
    i = next(k for k, line in enumerate(t1) if line.split()[:1] == ["critical@0.3"])
    assert t1[i + 1].split()[:3] == ["paper", "84.50", "80.98"]          # unmarked: the backbone is the paper's
    assert t1[i + 2].split()[:4] == ["ours", "-", "paper", "-9.50"]       # Alfworld 75.00 - 84.50
    t3 = section(text, "Table 3")
    row = next(line for line in t3 if line.startswith("Critical"))
    assert "65.91" in row and "+9.09" in row and "38.36" in row and "+36.64" in row  # 75 - 65.91, 75 - 38.36
    # --backbone names the main one: Mistral's rows make Table 1, beside Table 7's Mistral numbers
    out = run_report(tmp_path, two_backbones, "--backbone", MISTRAL)
    text = capsys.readouterr().out
    assert out["backbone"] == MISTRAL and set(out["table1"]) == {"complete", "critical@0.3", "base"}
    assert out["paper"]["table1"]["complete"]["maze"] == 44.00 and out["paper"]["table1"]["base"]["maze"] == 4.00
    assert out["paper"]["table3"]["complete"] == (57.83, 16.61)  # Table 7's AVGs: Table 3 is Llama's
    # Llama's single-task rows keep Llama's paper numbers (by name), Llama's Table 1 rows move to Table 7
    assert list(out["table4"]) == [LLAMA] and out["table4"][LLAMA][0]["paper"] == 78.93
    assert list(out["table7"]) == [LLAMA, MISTRAL] and "critical@0.3" in out["table7"][LLAMA]


def test_single_task_rows_of_other_backbones_and_an_unknown_main(tmp_path, capsys):
    # the main backbone's name is none of the paper's: its rows are compared with Llama's, marked so; the other
    # backbone (also no paper name) has no paper numbers at all
    rows = episodes("critical@0.3", "babyai", [1, 0], "tiny-qwen", sel("oracle", 0.3, "gpt-4o", ["babyai"]))
    rows += episodes("critical@0.3", "babyai", [1, 1], "my-model-7b", sel("oracle", 0.3, "gpt-4o", ["babyai"]))
    for backbone in ("tiny-qwen", "my-model-7b"):  # each also has a model trained on several envs
        rows += episodes("complete", "maze", [1, 1], backbone, sel("complete", 1.0, None, ["babyai", "maze"]))
    rows += episodes("base", "maze", [0, 0], "tiny-qwen")  # the main backbone: two multi-task rows against one
    out = run_report(tmp_path, rows)
    text = capsys.readouterr().out
    assert out["backbone"] == "tiny-qwen"
    assert out["table4"]["tiny-qwen"][0]["paper"] == 78.93 and out["table4"]["my-model-7b"][0]["paper"] is None
    assert out["table4"]["my-model-7b"][0]["cell"]["score"] == 100.0
    assert f"backbone tiny-qwen (main): the paper's numbers as 'paper ({P.LLAMA})'" in text
    assert "backbone my-model-7b: not one of the paper's backbones (no paper numbers)" in text
    t1 = section(text, "Table 1")
    assert any(line.split()[:3] == ["paper", f"({P.LLAMA})", "48.00"] for line in t1)  # Maze, AgentTraj-L


def test_lines_without_a_backbone_join_the_main_one(tmp_path, capsys):
    old = episodes("complete", "maze", [1, 0])  # an older file: no backbone
    new = episodes("complete", "maze", [1, 1], LLAMA, first=2) + episodes("complete", "maze", [0], MISTRAL)
    new += episodes("critical@0.3", "maze", [1], LLAMA)
    out = run_report(tmp_path, old + new)
    assert out["backbone"] == LLAMA and out["table1"]["complete"]["maze"]["n"] == 4  # 2 old + 2 Llama
    assert out["table7"][MISTRAL]["complete"]["maze"]["n"] == 1  # the same label on Mistral stays apart
    dup = episodes("complete", "maze", [1], LLAMA)  # maze_0 again: the old line is Llama's
    with pytest.raises(SystemExit) as e:
        report.main([write(tmp_path / "d.jsonl", old + dup), "--report-png", str(tmp_path / "t.png")])
    assert "line 3: episode 'maze_0' of label 'complete' is already at" in str(e.value) and "line 1" in str(e.value)
    with pytest.raises(SystemExit) as e:
        report.main([write(tmp_path / "b.jsonl", new), "--backbone", "Qwen2.5-7B-Instruct",
                     "--report-png", str(tmp_path / "t.png")])
    assert "--backbone Qwen2.5-7B-Instruct: no result line has it" in str(e.value) and "\n" not in str(e.value)


def test_table6_and_its_paper_numbers(tmp_path, capsys):
    rows = []
    for t, (scratch, restart) in enumerate([(0, 1), (0, 1), (1, 1), (0, 0)]):
        base = {"item_id": f"maze_{t}", "env": "maze", "task_id": t, "label": "base", "backbone": LLAMA}
        rows.append({**base, "reward": float(scratch), "success": scratch, "start": None})
        rows.append({**base, "reward": float(restart), "success": restart, "start": 3})
    out = run_report(tmp_path, rows)
    assert out["table6"]["base"]["maze"]["scratch"]["score"] == 25.0
    assert out["paper"]["table6"]["base"]["maze"] == (18.0, 44.0)
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("base") and "Maze" in line)
    assert row.split()[-2:] == ["18.00", "44.00"] and "25.00" in row and "75.00" in row


def test_paper_numbers_are_consistent():
    # every 16-column row's AVGs are its columns' means as the paper rounds them (the paper's own arithmetic, which
    # catches a mistyped cell), and Table 3 is Table 7's (and Table 1's) AVG columns
    for table in (P.TABLE1, P.TABLE2, P.TABLE7):
        for key, cells in table.items():
            assert len(cells) == len(P.COLUMNS), key
            row = dict(zip(P.COLUMNS, cells))
            held_in = [row[e] for e in P.COLUMNS[:10]]
            held_out = [row[e] for e in P.COLUMNS[11:15]]
            assert sum(held_in) / 10 == pytest.approx(row["avg_in"], abs=0.015), key
            assert sum(held_out) / 4 == pytest.approx(row["avg_out"], abs=0.015), key
    for key, (held_in, held_out) in P.TABLE3.items():
        row = dict(zip(P.COLUMNS, P.TABLE7.get(key) or P.TABLE1[key]))
        assert (row["avg_in"], row["avg_out"]) == (held_in, held_out), key
    assert P.COLUMNS[:10] == tuple(scores.HELD_IN) and P.COLUMNS[11:15] == tuple(scores.HELD_OUT)


def test_row_rules_scope_and_selector(tmp_path, capsys):
    # a model trained on one env it was never evaluated on (a fork's toy records of env "tiny") is an ordinary row
    rows = episodes("toy@0.3", "maze", [1, 0], LLAMA, sel("toy", 0.3, None, ["tiny"]))
    # one label, two selector models: two rows, named apart; the same label with another method is refused
    rows += episodes("critical@0.3", "maze", [1, 1], LLAMA, sel("oracle", 0.3, "gpt-4o", ["maze", "wordle"]))
    rows += episodes("critical@0.3", "maze", [0, 0], LLAMA, sel("oracle", 0.3, "qwen-72b", ["maze", "wordle"]))
    out = run_report(tmp_path, rows)
    assert set(out["table1"]) == {"toy@0.3", "critical@0.3 [gpt-4o]", "critical@0.3 [qwen-72b]"}
    assert out["table1"]["critical@0.3 [qwen-72b]"]["maze"]["score"] == 0.0
    assert list(out["table3"]) == ["toy@0.3", "critical@0.3 [gpt-4o]", "critical@0.3 [qwen-72b]"]
    text = capsys.readouterr().out
    assert out["table4"] == {} and "in no table" not in text
    t3 = section(text, "Table 3")
    assert t3[-1].split()[:2] == ["Critical", "30%"] and t3[-1].endswith("row: critical@0.3 [qwen-72b]")
    bad = rows + episodes("critical@0.3", "wordle", [1], LLAMA, sel("random", 0.3, "gpt-4o", ["maze", "wordle"]))
    with pytest.raises(SystemExit) as e:
        report.main([write(tmp_path / "b.jsonl", bad), "--report-png", str(tmp_path / "t.png")])
    assert "line 7: label 'critical@0.3' has the selection ('random', 0.3, 'gpt-4o') here" in str(e.value)


def test_a_run_of_one_training_env_reports_its_models_in_table_1(tmp_path, capsys):
    # the demo: every model trained on BabyAI alone, evaluated on BabyAI and Wordle; with no model of the backbone
    # trained on several envs there is nothing to set single-task models beside: they are Table 1's rows
    one = sel("oracle", 0.3, "smollm2", ["babyai"])
    rows = episodes("critical@0.3", "babyai", [1, 0], "SmolLM2-135M-Instruct", one)
    rows += episodes("critical@0.3", "wordle", [0], "SmolLM2-135M-Instruct", one)
    rows += episodes("complete", "babyai", [1, 1], "SmolLM2-135M-Instruct", sel("complete", 1.0, None, ["babyai"]))
    rows += episodes("base", "babyai", [0], "SmolLM2-135M-Instruct")
    out = run_report(tmp_path, rows)
    assert set(out["table1"]) == {"critical@0.3", "complete", "base"} and out["table4"] == {}
    assert out["table1"]["critical@0.3"]["babyai"]["score"] == 50.0 and out["table1"]["critical@0.3"]["wordle"]
    text = capsys.readouterr().out
    assert "Table 4" not in text and "in no table" not in text
    # one model of the backbone trained on two envs: the BabyAI-only models become single-task (Tables 4 and 5)
    rows += episodes("random@0.3", "babyai", [1], "SmolLM2-135M-Instruct", sel("random", 0.3, None,
                                                                                ["babyai", "maze"]))
    out = run_report(tmp_path, rows)
    assert set(out["table1"]) == {"random@0.3", "base"}
    assert [r["cell"]["n"] for r in out["table4"]["SmolLM2-135M-Instruct"]] == [2]  # its BabyAI episodes only
