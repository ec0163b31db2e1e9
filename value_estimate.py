"""Value-estimate selection (paper §4.5.4 Table 4, App. B.3, after IPR / Xiong et al. 2024): a step is critical
when the expert's action raises the Monte-Carlo value estimate by more than a threshold.

For a trajectory with expert actions a_1..a_T (its steps) and every t = 0..T:
  * restore the state after a_t: reset the env on the trajectory's task id and replay the expert turns a_1..a_t
    (as IPR does; envs cannot be copied, so every rollout does its own reset + replay);
  * run N rollouts with the policy (temperature 1) from there to the end of the episode;
  * r_s(s_t, a_t) = the mean final reward of the N rollouts (eq. 8). For t = T nothing is left to roll out when
    the replay itself ends the episode: every "rollout" is then the expert trajectory's own reward r_o (eq. 8's
    t = n case); the env is deterministic, so the N replays agree.
  * V(s_t) = sum_{k=t..T} gamma^(k-t) r_s(s_k, a_k) (eq. 9), kept in the output for every step.

Which difference marks a step critical (paper: "the difference between consecutive steps ... exceeds 0.1").
We take  delta_t = r_s(s_t, a_t) - r_s(s_{t-1}, a_{t-1})  and call step t critical when delta_t > threshold.
Why this and not V(s_t) - V(s_{t-1}) of eq. 9: eq. 9 telescopes, V(s_{t-1}) = r_s(s_{t-1}) + gamma V(s_t), so
V(s_t) - V(s_{t-1}) = (1 - gamma) V(s_t) - r_s(s_{t-1}). V sums the remaining steps: it falls by about r_s at
every step and can rise by at most (1 - gamma) (T - t + 1), i.e. less than 0.1 for gamma = 0.99 and fewer than 10
steps left, so the literal rule almost never fires. r_s(s_{t-1}, a_{t-1}) is the policy's own value of the state
s_t in which the expert chose a_t, and r_s(s_t, a_t) the value after the expert's choice: delta_t is the
advantage of the expert action over the policy, the quantity the paper describes ("values of 0 at initial steps
and 1 at later steps; only a few steps are identified as critical"). For the first step, r_s(s_0, a_0) is the
value of the start state: N rollouts with nothing replayed (N extra rollouts per trajectory).
`--criterion v` applies the literal rule to eq. 9's V instead (with V(s_0) = r_s(s_0) + gamma V(s_1)).

Cost: N (T + 1) episodes per trajectory, each with up to max_rounds - t policy calls; the script prints the totals
before it starts (the paper: 2000 trajectories x 25 steps need >= 6.5e5 inferences). Rollouts of many
trajectories run together, --concurrency at a time (agent.run_episodes: one batched policy call per round).

    # built-in env, a model served by vLLM (`vllm serve meta-llama/Llama-3.1-8B-Instruct --port 8000`)
    python value_estimate.py --input data/maze_train.jsonl --output out/value_maze.jsonl --env maze \
        --policy openai --model meta-llama/Llama-3.1-8B-Instruct --base-url http://127.0.0.1:8000/v1 --concurrency 64
    # an AgentGym server whose reset is deterministic per task id (the paper: BabyAI and Weather)
    python value_estimate.py --input AgentTraj-L/babyai.json --output out/value_babyai.jsonl --env babyai \
        --env-server http://127.0.0.1:36001 --policy openai --model M --concurrency 64
    # a local transformers model, all running rollouts in one batch
    python value_estimate.py --input data/wordle_train.jsonl --output out/value_wordle.jsonl --env wordle \
        --policy hf --model out/sft --concurrency 16

Records are matched to tasks by trajectory.env_task: the env and task id of item_id "<env>_<task id>" (AgentGym's
naming, its prefixes too: lmrlgym_maze_12, tool_weather_5), or the record's own "task_id" field. On a file of
several envs (AgentTraj-L, the driver's training set) the records of the others are skipped and counted; an
item_id the rule cannot read stops the run, naming the record. Every rollout first checks that the replay
reproduces the recorded observations; a mismatch stops the run (the env's reset is then not deterministic for that
task id, or the data comes from another env version). Output: one record per trajectory via
trajectory.with_selection, selection = {"method": "value", "rollouts", "gamma", "threshold", "values": {step: V},
"r_s": {step: r_s}, "delta": {step: delta}, ...}; resumable per trajectory.
"""
import argparse
import math
import time
from collections import Counter, defaultdict

from tqdm import tqdm

import agent
import runs
import trajectory
from envs import BUILTIN, make_env

# Environments whose reset(task_id) gives the same task every time. The built-ins promise it (envs/__init__.py).
# Over HTTP: the paper ran value estimation on BabyAI and Weather only, "because some others randomly generate goals
# upon reset"; AgentGym's maze and wordle (LMRL-Gym) fix the maze / seed the word by the id, like our built-ins.
DETERMINISTIC_RESET = {"server": {"babyai", "weather", "maze", "wordle"}, "builtin": set(BUILTIN)}


# ----------------------------------------------------------------------------- the trajectory and its rollouts


def task_id_of(rec, env_name):
    """The task id to reset for a record of env `env_name` (trajectory.env_task; any env when `env_name` is empty);
    RecordError for a record of another env or an item_id the rule cannot read."""
    try:
        env, task = trajectory.env_task(rec)
    except ValueError as e:
        raise trajectory.RecordError(str(e)) from None
    if env_name and env != env_name:
        raise trajectory.RecordError(f"item_id {rec['item_id']!r} is a record of env {env!r}, not {env_name!r}")
    return task


def expert_turns(rec):
    """The expert's assistant turns to replay, in order: every gpt turn after the acknowledgement (index 1).
    They must be exactly the record's steps, so that rollout point t means "after step t"."""
    turns = [i for i, t in enumerate(rec["conversations"]) if t["from"] == "gpt" and i >= 3]
    if turns != trajectory.step_indices(rec):
        raise trajectory.RecordError(f"item_id {rec['item_id']!r}: steps {trajectory.step_indices(rec)} are not the "
                                     f"gpt turns after the acknowledgement {turns}; value estimation replays them all")
    return [rec["conversations"][i]["value"] for i in turns]


def rollout_jobs(rec, task_id, rollouts):
    """agent.run_episodes jobs for one trajectory: N rollouts after replaying the first t expert turns, t = 0..T."""
    turns = expert_turns(rec)
    return [{"task_id": task_id, "replay": turns[:t], "key": (rec["item_id"], t)}
            for t in range(len(turns) + 1) for _ in range(rollouts)]


def check_replay(rec, result, t):
    """Raise unless the replay of the first t expert turns met the recorded observations and did not end early."""
    conv, got = rec["conversations"], result["conversations"]
    if result["rounds"] < t:
        raise RuntimeError(f"item_id {rec['item_id']!r}: the env ended the episode after {result['rounds']} of the "
                           f"{t} replayed expert turns (end={result['end']!r}); the recording does not replay")
    for j in range(2, min(3 + 2 * t, len(conv)), 2):  # observations: conversations[2], [4], ... up to after a_t
        if got[j]["value"].strip() != conv[j]["value"].strip():
            raise RuntimeError(
                f"item_id {rec['item_id']!r}: replaying {t} expert turns gave a different observation at "
                f"conversations[{j}]:\n  recorded: {conv[j]['value'][:200]!r}\n  env:      {got[j]['value'][:200]!r}\n"
                f"The env's reset/step is not deterministic for this task id (or the data comes from another env "
                f"version); value estimation cannot restore the states of this trajectory.")


def step_values(rewards, gamma):
    """From rewards[t] = final rewards of the rollouts after t expert turns (t = 0..T), return
    (r_s, V): r_s[t] = mean of rewards[t] (eq. 8) and V[t] = sum_{k=t..T} gamma^(k-t) r_s[k] (eq. 9)."""
    r_s = [sum(r) / len(r) for r in rewards]
    V = [0.0] * len(r_s)
    acc = 0.0
    for t in reversed(range(len(r_s))):
        acc = r_s[t] + gamma * acc
        V[t] = acc
    return r_s, V


def critical_steps(steps, r_s, V, threshold, criterion="rs"):
    """Steps (conversation indices; steps[t-1] is expert turn t) whose delta_t > threshold (see the docstring)."""
    x = r_s if criterion == "rs" else V
    delta = [x[t] - x[t - 1] for t in range(1, len(x))]
    return [s for s, d in zip(steps, delta) if d > threshold], delta


def count_cost(records, rollouts, max_rounds):
    """(episodes, replayed env steps, min policy calls, max policy calls) for all records. A rollout after t
    expert turns makes at most max_rounds - t policy calls, and none only if the replay already ended it."""
    episodes = replay = lo = hi = 0
    for rec in records:
        T = len(trajectory.step_indices(rec))
        episodes += rollouts * (T + 1)
        replay += rollouts * T * (T + 1) // 2
        lo += rollouts * min(T, max_rounds)  # every rollout before the last expert turn calls the policy at least once
        hi += rollouts * sum(max(0, max_rounds - t) for t in range(T + 1))
    return episodes, replay, lo, hi


def estimate(records, make_env_fn, policy, rollouts=5, gamma=0.99, threshold=0.1, concurrency=1,
             temperature=1.0, criterion="rs", env_name="", progress=None, stats=None, replay_check=True):
    """Yield one output record per trajectory (in completion order) as soon as all of its rollouts are back."""
    stats = stats if stats is not None else defaultdict(int)
    by_id, rewards, left, jobs, last_error = {}, {}, {}, [], None
    for rec in records:
        T = len(trajectory.step_indices(rec))
        by_id[rec["item_id"]] = rec
        rewards[rec["item_id"]] = [[] for _ in range(T + 1)]
        left[rec["item_id"]] = rollouts * (T + 1)
        jobs += rollout_jobs(rec, task_id_of(rec, env_name), rollouts)
    for res in agent.run_episodes(make_env_fn, policy, jobs, concurrency=concurrency, temperature=temperature):
        item_id, t = res["key"]
        rec = by_id[item_id]
        if replay_check:
            check_replay(rec, res, t)
        stats["episodes"] += 1
        stats["policy_calls"] += res["rounds"] - min(t, res["rounds"])
        stats["env_steps"] += res["rounds"]
        stats[f"end_{res['end']}"] += 1
        if res["end"] == "policy_error":
            stats["policy_errors"] += 1  # not a sample of the policy's outcome: left out of the mean
            last_error = res.get("error")
        else:
            rewards[item_id][t].append(float(res["reward"]))
        if progress is not None:
            progress.update(1)
        left[item_id] -= 1
        if left[item_id]:
            continue
        if any(not r for r in rewards[item_id]):
            raise agent.PolicyError(f"item_id {item_id!r}: every rollout of some step ended in a policy error "
                                    f"(the last: {last_error})")
        steps = trajectory.step_indices(rec)
        r_s, V = step_values(rewards.pop(item_id), gamma)
        critical, delta = critical_steps(steps, r_s, V, threshold, criterion)
        stats["trajectories"] += 1
        stats["steps"] += len(steps)
        stats["selected"] += len(critical)
        stats["no_critical"] += not critical
        selection = {"method": "value", "rollouts": rollouts, "gamma": gamma, "threshold": threshold,
                     "criterion": criterion, "temperature": temperature,
                     "values": {str(s): V[t + 1] for t, s in enumerate(steps)},
                     "r_s": {str(s): r_s[t + 1] for t, s in enumerate(steps)},
                     "delta": {str(s): d for s, d in zip(steps, delta)},
                     "start": {"r_s": r_s[0], "value": V[0]}}
        yield trajectory.with_selection(rec, critical, selection)


# ----------------------------------------------------------------------------- main


def make_policy(args):
    """The rollout policy from the command line (agent.make_policy: ValueError with one line for bad settings)."""
    return agent.make_policy(args.policy, model=args.model, base_url=args.base_url, api_key=args.api_key,
                             max_new_tokens=args.max_new_tokens, max_context=args.max_context,
                             temperature=args.temperature, timeout=args.request_timeout, dtype=args.dtype,
                             template_kwargs=trajectory.template_kwargs(args.chat_template_kwargs))


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- data
    p.add_argument("--input", required=True, help="expert trajectories: JSONL or a JSON list (AgentTraj-L format)")
    p.add_argument("--output", required=True, help="output JSONL (resumable per trajectory)")
    p.add_argument("--force", action="store_true", help="write into an output made with other settings (env, "
                                                        "policy, model, rollouts, gamma, threshold, criterion)")
    p.add_argument("--limit", type=int, default=None, help="only the first N records of --env (smoke tests)")
    # ---- environment
    p.add_argument("--env", required=True, help=f"environment name: built-in {', '.join(BUILTIN)}, or an AgentGym "
                                                f"env with --env-server; records of other envs in --input are "
                                                f"skipped and counted")
    p.add_argument("--env-server", default=None, help="AgentGym environment server URL (default: the built-in env)")
    p.add_argument("--assume-deterministic-reset", action="store_true",
                   help="run on a server env not known to reset deterministically (the replay check still runs)")
    p.add_argument("--no-replay-check", action="store_true",
                   help="do not compare replayed observations with the recorded ones (e.g. reformatted data)")
    # ---- policy
    p.add_argument("--policy", choices=["openai", "hf", "expert"], default="openai",
                   help="who rolls out: an OpenAI-compatible server, a local transformers model, or the built-in "
                        "expert (a smoke test: every rollout succeeds)")
    p.add_argument("--model", default=None, help="openai: served model name; hf: model folder")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: server URL")
    p.add_argument("--api-key", default="EMPTY", help="openai: API key (never written to any file)")
    p.add_argument("--request-timeout", type=float, default=120.0, help="openai: seconds per request")
    p.add_argument("--chat-template-kwargs", default=None,
                   help="template variables for every render of the chat template, as JSON (e.g. "
                   "'{\"enable_thinking\": false}' for Qwen3); give train.py, perplexity.py, evaluate.py and "
                   "value_estimate.py the same")
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
                   help="hf: weights dtype (auto: bf16 where the hardware has it natively, else float32)")
    p.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature (paper/IPR: 1)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="tokens per policy turn")
    p.add_argument("--max-context", type=int, default=4096,
                   help="prompt + answer tokens per turn (AgentGym: 4096; the answer budget shrinks to what is "
                        "left, a rollout ends when the prompt alone fills it; 0: no limit)")
    # ---- estimate
    p.add_argument("--rollouts", type=int, default=5, help="N rollouts per step (paper: 5)")
    p.add_argument("--gamma", type=float, default=0.99, help="discount of eq. 9 (paper: 0.99)")
    p.add_argument("--threshold", type=float, default=0.1, help="critical when the value rises by more (paper: 0.1)")
    p.add_argument("--criterion", choices=["rs", "v"], default="rs",
                   help="rs: rise of r_s (eq. 8) from the previous step; v: rise of eq. 9's V (see docstring)")
    p.add_argument("--concurrency", type=int, default=8, help="rollouts running at once (one env instance each)")
    return p.parse_args(argv)


def check_args(args):
    """Refuse settings that make no sense (ValueError), before anything is read, reset or loaded."""
    for flag, value in [("--rollouts", args.rollouts), ("--concurrency", args.concurrency),
                        ("--max-new-tokens", args.max_new_tokens),
                        ("--limit", 1 if args.limit is None else args.limit)]:
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if not 0 <= args.gamma <= 1:
        raise ValueError(f"--gamma must be in [0, 1], got {args.gamma}")
    if not math.isfinite(args.threshold) or not 0 <= args.temperature < math.inf:
        raise ValueError(f"--threshold must be a number and --temperature >= 0, got {args.threshold} and "
                         f"{args.temperature}")
    kind = "server" if args.env_server else "builtin"
    if args.env not in DETERMINISTIC_RESET[kind] and not args.assume_deterministic_reset:
        raise ValueError(
            f"refusing --env {args.env}{' on ' + args.env_server if args.env_server else ''}: rollouts restore a "
            f"state by resetting the task and replaying the expert, which needs a reset that is deterministic per "
            f"task id; known to be: {', '.join(sorted(DETERMINISTIC_RESET[kind]))}. The paper ran this on BabyAI "
            f"and Weather only, because other envs draw goals at random on reset. If yours does not, pass "
            f"--assume-deterministic-reset (the replay check still guards the run).")
    runs.check_output(args.output, [args.input])


def read_input(args):
    """(the records of --env to estimate, each checked to name its task and to be replayable, Counter of the
    records of other envs skipped). RecordError naming the record for an item_id the rule cannot read (its env is
    unknown, so it is never skipped) or a record of --env that cannot be replayed."""
    records, other = [], Counter()
    for n, rec in enumerate(trajectory.read_records(args.input), 1):
        try:
            env, _ = trajectory.env_task(rec)
            if env == args.env:
                expert_turns(rec)
        except ValueError as e:  # RecordError is a ValueError
            raise trajectory.RecordError(f"{args.input}: record {n}: {e}") from None
        if env != args.env:
            other[env] += 1
        elif args.limit is None or len(records) < args.limit:
            records.append(rec)
    if not records:
        raise trajectory.RecordError(f"{args.input}: no record of env {args.env!r} (the file holds "
                                     f"{', '.join(f'{e} {k}' for e, k in other.most_common())})")
    return records, other


def skipped_text(other):
    """How the records of other envs are named in the summary lines."""
    if not other:
        return ""
    counts = ", ".join(f"{e} {k}" for e, k in other.most_common())
    return f"; {sum(other.values())} records of other envs skipped ({counts})"


def max_rounds_of(args):
    """The env's episode length, from one instance (which also checks that the env can be made)."""
    try:
        probe = make_env(args.env, args.env_server)
    except (ValueError, OSError) as e:
        raise ValueError(f"--env {args.env}: {e}") from None
    try:
        return probe.max_rounds
    finally:
        probe.close()


def open_output(args, records):
    """The output, opened (runs.open_output), with .prepared = (the records not done yet, the policy, made only if
    anything is left). A refused run leaves no new output or config behind."""
    def prepare(done):
        todo = [rec for rec in records if rec["item_id"] not in done]
        return todo, (make_policy(args) if todo else None)
    config = {**{k: v for k, v in vars(args).items() if k != "force"}, "model_id": runs.identity(args.model),
              "chat_template_kwargs": trajectory.template_kwargs(args.chat_template_kwargs)}
    # the model by what it is, not where (runs.identity): a moved or copied output folder still resumes
    compare = ["env", "policy", "model_id", "rollouts", "gamma", "threshold", "criterion", "temperature",
               "chat_template_kwargs"]
    return runs.open_output(args.output, config, compare, force=args.force, inputs=[args.input], prepare=prepare)


def main(argv=None):
    args = get_args(argv)
    try:  # every refusal is one line
        check_args(args)
        records, other = read_input(args)
        max_rounds = max_rounds_of(args)
        out = open_output(args, records)
    except (ValueError, runs.OutputBusy) as e:  # RecordError is a ValueError
        raise SystemExit(f"value_estimate.py: {e}") from None
    (todo, policy), n_done = out.prepared, len(out.done)
    episodes, replay, lo, hi = count_cost(todo, args.rollouts, max_rounds)
    n_steps = sum(len(trajectory.step_indices(r)) for r in todo)
    print(f"value estimate: {len(records)} trajectories of {args.env}, {n_done} already done, {len(todo)} to "
          f"estimate ({n_steps} steps) with {args.rollouts} rollouts per step and the start state{skipped_text(other)}")
    print(f"  needs {episodes} episodes (resets), {replay} replayed env steps, and between {lo} and {hi} policy "
          f"calls (= env steps of the rollouts; max {max_rounds} rounds per episode) at concurrency {args.concurrency}")
    stats = defaultdict(int)
    t0 = time.time()
    bar = tqdm(total=episodes, desc="rollouts", unit="ep", disable=not todo)
    try:
        results = estimate(todo, lambda: make_env(args.env, args.env_server), policy, rollouts=args.rollouts,
                           gamma=args.gamma, threshold=args.threshold, concurrency=args.concurrency,
                           temperature=args.temperature, criterion=args.criterion, env_name=args.env,
                           progress=bar, stats=stats, replay_check=not args.no_replay_check) if todo else []
        for rec in results:
            out.append(rec)
    except agent.PolicyError as e:  # e.g. the model server cannot be reached: every rollout would fail
        raise SystemExit(f"value_estimate.py: {e}") from None
    except RuntimeError as e:  # the replay does not restore a recorded state: the data or the env is not usable
        raise SystemExit(f"value_estimate.py: {args.input}: {e}") from None
    finally:
        bar.close()
        out.close()
    if not todo:
        return
    dt = time.time() - t0
    print(f"wrote {stats['trajectories']} trajectories to {args.output}: {stats['selected']} of {stats['steps']} steps "
          f"critical ({stats['no_critical']} trajectories with none); {stats['episodes']} episodes, "
          f"{stats['policy_calls']} policy calls ({stats['policy_calls'] / max(dt, 1e-9):.1f}/s), "
          f"{stats['policy_errors']} rollouts lost to policy errors, {dt:.0f} s{skipped_text(other)}")


if __name__ == "__main__":
    main()
