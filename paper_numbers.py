"""The paper's own numbers (Chen et al., ATLaS, ACL 2025), typed once from its text and checked twice against it;
report.py prints them beside ours and reads them from here only. Data, nothing else.

Rows are keyed as the report keys its own: (the paper's backbone, row, ratio), where row is the report's name of a
selection (base, complete, critical = ATLaS's oracle, noncritical, random, perplexity, value) and ratio the step
ratio m (complete 1.0, base None). Cells are on the report's 0..100 scale, as the paper prints them.
"""

LLAMA, MISTRAL, QWEN = "Llama-3.1-8B-Instruct", "Mistral-7B-Instruct-v0.3", "Qwen2.5-7B-Instruct"
# our backbone's name (a model folder's basename) -> the paper's backbone: the first key the name contains,
# case-insensitive; any other name has no paper numbers
BACKBONES = {"llama-3.1-8b": LLAMA, "mistral-7b": MISTRAL, "qwen2.5-7b": QWEN}
# selector LLMs (selection.model) -> the paper's name in Table 5: a regular expression searched in the lowercased
# model name ("gpt-4o-mini" is not GPT-4o)
SELECTORS = {r"gpt-4o(?!-mini)": "GPT-4o", r"llama-?3\.1-70b": "Llama-3.1-70B-Instruct"}
ORACLE = "GPT-4o"  # the paper's selector LLM unless Table 5 says otherwise
RATIO = 0.3        # the paper's m: ATLaS, Table 4's ATLaS, Table 5, Table 7's "Ours", the perplexity baseline

# The 16 columns of Tables 1, 2 and 7, in the paper's order (our env names; the split's AVG after each split).
COLUMNS = ("alfworld", "babyai", "maze", "movie", "sciworld", "textcraft", "todo", "weather", "webshop", "wordle",
           "avg_in", "academia", "sheet", "jericho", "pddl", "avg_out")

# Table 1 (held-in and held-out test tasks, COLUMNS): the rows we can make. "Llama-3.1-8B-Instruct",
# "Mistral-7B-Instruct-v0.3", "Qwen2.5-7B-Instruct" (Open-Source Base Model: the untrained backbones, our "base"),
# "AgentTraj-L (100% steps)" (complete), "Perplexity Selection" (top 30 % perplexity steps, App. B.2) and
# "ATLAS (30% steps)" (critical@0.3), all fine-tuned from Llama-3.1-8B-Instruct. The closed-source models and the
# other fine-tuned agents (Xlam, AgentLM, AgentEvol) are not rows this code trains.
TABLE1 = {
    (LLAMA, "base", None): (0.00, 60.69, 16.00, 65.00, 19.57, 9.00, 65.00, 40.00, 2.00, 0.00, 27.72,
                            40.00, 37.31, 19.23, 12.18, 27.18),
    (MISTRAL, "base", None): (0.00, 17.30, 4.00, 0.00, 48.00, 0.00, 10.00, 5.00, 0.00, 0.00, 8.43,
                              0.00, 9.69, 1.96, 2.50, 3.54),
    (QWEN, "base", None): (0.00, 67.00, 16.00, 75.00, 15.30, 7.00, 85.00, 30.00, 3.00, 12.00, 31.03,
                           55.00, 39.00, 14.26, 0.28, 27.14),
    (LLAMA, "complete", 1.0): (83.00, 70.31, 48.00, 75.00, 37.92, 71.00, 85.00, 55.00, 68.00, 12.00, 60.52,
                               75.00, 42.83, 15.18, 11.71, 36.18),
    (LLAMA, "perplexity", 0.3): (78.50, 77.59, 24.00, 65.00, 53.54, 59.00, 70.00, 30.00, 66.50, 8.00, 53.21,
                                 30.00, 36.48, 13.28, 8.76, 22.13),
    (LLAMA, "critical", 0.3): (84.50, 80.98, 48.00, 90.00, 42.02, 72.00, 90.00, 60.00, 71.50, 20.00, 65.91,
                               70.00, 49.39, 18.21, 15.84, 38.36),
}

# Table 2 (critical vs non-critical steps vs complete trajectories, Llama-3.1-8B-Instruct, COLUMNS):
# "Non-critical Steps (30%)", "Complete Trajectories (100%) by AgentTraj-L", "Critical Steps (30%) by ATLAS".
# The paper's Table 2 prints ATLaS's Sciworld as 42.01 where its Table 1 prints 42.02; each table keeps its own.
TABLE2 = {
    (LLAMA, "noncritical", 0.3): (78.00, 70.70, 32.00, 75.00, 39.02, 57.00, 75.00, 55.00, 68.00, 12.00, 56.17,
                                  60.00, 40.42, 10.80, 8.28, 29.88),
    (LLAMA, "complete", 1.0): (83.00, 70.31, 48.00, 75.00, 37.92, 71.00, 85.00, 55.00, 68.00, 12.00, 60.52,
                               75.00, 42.83, 15.18, 11.71, 36.18),
    (LLAMA, "critical", 0.3): (84.50, 80.98, 48.00, 90.00, 42.01, 72.00, 90.00, 60.00, 71.50, 20.00, 65.91,
                               70.00, 49.39, 18.21, 15.84, 38.36),
}

# Table 3 (random vs critical steps at each ratio, Llama-3.1-8B-Instruct): (held-in AVG, held-out AVG).
TABLE3 = {
    (LLAMA, "complete", 1.0): (60.52, 36.18),
    (LLAMA, "random", 0.3): (59.90, 38.04),
    (LLAMA, "random", 0.2): (59.08, 34.73),
    (LLAMA, "random", 0.1): (58.68, 29.04),
    (LLAMA, "critical", 0.3): (65.91, 38.36),
    (LLAMA, "critical", 0.2): (60.40, 36.96),
    (LLAMA, "critical", 0.1): (58.99, 31.18),
}

# Table 4 (ATLaS vs value-function selection, single-task models, Llama-3.1-8B-Instruct): (backbone, env, row)
# -> performance. ATLaS is the paper's default selection (GPT-4o, m = 30 %; the table names neither).
TABLE4 = {
    (LLAMA, "babyai", "critical"): 78.93,
    (LLAMA, "babyai", "value"): 78.58,
    (LLAMA, "weather", "critical"): 60.00,
    (LLAMA, "weather", "value"): 60.00,
}

# Table 5 (the selector LLM, single-task models, Llama-3.1-8B-Instruct, m = 30 %): (backbone, env, selector) ->
# performance. The text reads "GPT-40" (OCR of GPT-4o) and "Llama3.1-70B" (Llama-3.1-70B-Instruct, its footnote).
# The paper prints no average row: its caption's "Average performance over tasks" is each env's mean over its test
# tasks; the report's Average row is the mean of the rows, computed the same way from these cells.
TABLE5 = {
    (LLAMA, "alfworld", "GPT-4o"): 83.00,
    (LLAMA, "alfworld", "Llama-3.1-70B-Instruct"): 78.50,
    (LLAMA, "babyai", "GPT-4o"): 78.93,
    (LLAMA, "babyai", "Llama-3.1-70B-Instruct"): 67.23,
    (LLAMA, "weather", "GPT-4o"): 60.00,
    (LLAMA, "weather", "Llama-3.1-70B-Instruct"): 55.00,
}

# Table 6 (the base model from scratch vs from a critical step, 100 tasks each, Llama-3.1-8B-Instruct):
# (backbone, env) -> (From Scratch, From Critical Step). The paper does not say whether "From Critical Step" is
# the mean over the restarts or each task's best; the report puts it beside its mean over restarts.
TABLE6 = {
    (LLAMA, "babyai"): (54.8, 76.4),
    (LLAMA, "maze"): (18.0, 44.0),
}

# Table 7 (App. C: other backbones, random selection, the critical ratio, COLUMNS): Mistral-7B-Instruct-v0.3 and
# Qwen2.5-7B-Instruct "AgentTraj-L" (complete) and "Ours" (ATLaS at the paper's m, critical@0.3); "Random
# Selection" 40/30/20/10 % and "Critical Selection Ratio" 30/20/10 %, both Llama-3.1-8B-Instruct (its complete
# row is Table 1's). The text's held-out header reads "Sheet Academic", but its values are in Table 1's order
# (Academic first): Academic is a success rate over 20 tasks (every value a multiple of 5: 35.00, 45.00, 55.00,
# 70.00) and the Critical 30 % row is Table 1's ATLaS row with Academic 70.00, Sheet 49.39; typed here in that order.
TABLE7 = {
    (MISTRAL, "complete", 1.0): (79.50, 76.43, 44.00, 75.00, 47.32, 76.00, 75.00, 25.00, 72.00, 8.00, 57.83,
                                 35.00, 22.39, 6.55, 2.50, 16.61),
    (MISTRAL, "critical", 0.3): (85.00, 77.73, 40.00, 85.00, 56.59, 69.00, 85.00, 30.00, 72.00, 8.00, 60.83,
                                 45.00, 30.44, 6.32, 2.53, 21.07),
    (QWEN, "complete", 1.0): (78.50, 73.48, 32.00, 80.00, 39.51, 55.00, 90.00, 40.00, 65.50, 8.00, 56.20,
                              55.00, 41.56, 14.52, 9.77, 30.21),
    (QWEN, "critical", 0.3): (76.50, 80.90, 40.00, 80.00, 41.32, 64.00, 80.00, 40.00, 62.50, 12.00, 57.72,
                              55.00, 39.96, 16.76, 11.72, 30.86),
    (LLAMA, "random", 0.4): (83.50, 73.08, 60.00, 85.00, 37.51, 69.00, 75.00, 50.00, 69.50, 16.00, 61.86,
                             55.00, 40.71, 18.97, 15.96, 32.66),
    (LLAMA, "random", 0.3): (83.50, 71.70, 40.00, 80.00, 38.32, 67.00, 80.00, 50.00, 68.50, 20.00, 59.90,
                             70.00, 48.63, 14.80, 18.71, 38.04),
    (LLAMA, "random", 0.2): (81.00, 72.30, 36.00, 80.00, 39.98, 65.00, 80.00, 60.00, 64.50, 12.00, 59.08,
                             65.00, 43.35, 13.93, 16.64, 34.73),
    (LLAMA, "random", 0.1): (78.50, 72.78, 32.00, 80.00, 41.02, 66.00, 80.00, 55.00, 65.50, 16.00, 58.68,
                             55.00, 36.95, 9.80, 14.39, 29.04),
    (LLAMA, "critical", 0.3): (84.50, 80.98, 48.00, 90.00, 42.01, 72.00, 90.00, 60.00, 71.50, 20.00, 65.91,
                               70.00, 49.39, 18.21, 15.84, 38.36),
    (LLAMA, "critical", 0.2): (82.50, 73.77, 48.00, 80.00, 34.68, 72.00, 80.00, 50.00, 71.00, 12.00, 60.40,
                               70.00, 43.90, 25.01, 8.94, 36.96),
    (LLAMA, "critical", 0.1): (78.00, 83.76, 44.00, 75.00, 36.13, 64.00, 80.00, 50.00, 67.00, 12.00, 58.99,
                               60.00, 35.63, 13.01, 16.08, 31.18),
}

# Figure 2 (three backbones, ATLaS vs full trajectories, held-in and held-out averages) is an image: the text holds
# none of its numbers. Its bars are taken to be the AVG columns of the same rows in Table 1 (Llama-3.1-8B) and
# Table 7 (Mistral, Qwen): (backbone, row) -> that row, not typed again.
FIGURE2 = {
    (LLAMA, "complete"): TABLE1[(LLAMA, "complete", 1.0)],
    (LLAMA, "critical"): TABLE1[(LLAMA, "critical", 0.3)],
    (MISTRAL, "complete"): TABLE7[(MISTRAL, "complete", 1.0)],
    (MISTRAL, "critical"): TABLE7[(MISTRAL, "critical", 0.3)],
    (QWEN, "complete"): TABLE7[(QWEN, "complete", 1.0)],
    (QWEN, "critical"): TABLE7[(QWEN, "critical", 0.3)],
}
