r"""Critical-step selection with an oracle LLM (ATLaS, paper §3.2 and Appendix D.1).

The oracle (GPT-4o in the paper) reads each expert trajectory, every turn labelled `conversation[i] (role)`,
summarises a high-level plan, and names at most k = max(1, floor(m * T)) of the T steps (gpt turns with loss true)
as critical, each with a category (Plan Creation, Critical Observation, Critical Action, Self Correction) and a
reason. The output record (trajectory.with_selection) keeps the whole trajectory with loss true only on the
critical steps; train.py computes the loss on exactly those (AgentGym's own bc_trainer ignores the `loss` flag
and trains every gpt turn).

    # paper: GPT-4o, m = 30 %, AgentTraj-L (~14k trajectories); estimate the cost first, then run
    export OPENAI_API_KEY=...
    python select.py --input data/agenttraj_l.json --output out/atlas.jsonl --dry-run
    python select.py --input data/agenttraj_l.json --output out/atlas.jsonl --ratio 0.3 --concurrency 16
    # the same requests through OpenAI's Batch API: half the price, results within 24 h (--dry-run --batch: $)
    python select.py --input data/agenttraj_l.json --output out/atlas.jsonl --ratio 0.3 --batch
    # any OpenAI-compatible server; small local models answer reliably only in (schema-constrained) JSON
    vllm serve Qwen/Qwen2.5-72B-Instruct --tensor-parallel-size 4       # or llama.cpp's llama-server
    python select.py --input x.jsonl --output y.jsonl --base-url http://localhost:8000/v1 \
        --model Qwen/Qwen2.5-72B-Instruct --response-format json
    # python -m llama_cpp.server takes the schema in its own form: --response-format json_object
    # ablations: random steps at the same budget (Table 3), the steps ATLaS did not pick (Table 2)
    python select.py --input data/agenttraj_l.json --output out/random30.jsonl --method random --ratio 0.3
    python select.py --input data/agenttraj_l.json --output out/noncritical.jsonl --method complement \
        --reference out/atlas.jsonl

Never losing work, never paying twice: records are appended and flushed one by one, a kill loses at most the
requests in flight, and a rerun of the same command skips the item_ids already in the output and retries the rest
(the last run's failures, with their reasons, are in OUTPUT.errors.jsonl). An item fails alone and never gets a
made-up selection: an answer that names no usable step is asked again (--parse-retries), then goes to the errors
file; named indices that are not steps, repeats and those past the budget are dropped (the first k kept) and counted
in the record and in the final summary (answers.py parses). Only what fails every item (a refused key, a server that
cannot be reached) stops the run, with one line; the retries, the threads and the key's redaction are oracle.py.
One run writes an output at a time (OUTPUT.lock), and a rerun with other settings (method, ratio, model, seed,
reference) than OUTPUT.config.json is refused unless --force; the key is never written (only api_key_set). With
--batch the file and batch ids are kept in OUTPUT.batch.json (batches.run_batches): a killed run resumes the same
batches and never uploads or creates one twice; a batch's unusable answers go to the errors file, and a rerun (with
or without --batch) asks for them again.
"""
# `import select` from the project root (subprocess, asyncio, torch do it) finds this file, not the standard
# library's module: hand that one over instead, and run nothing of the stage (below are only definitions).
if __name__ == "select":
    import importlib.machinery, importlib.util, os, sys
    _here = os.path.dirname(os.path.abspath(__file__))
    _spec = importlib.machinery.PathFinder.find_spec("select", [p for p in sys.path if os.path.abspath(p) != _here])
    _spec.loader.exec_module(_real := importlib.util.module_from_spec(_spec))
    sys.modules["select"] = _real
else:
    import argparse
    import collections
    import json
    import os
    import random
    import sys
    import time

    from tqdm import tqdm

    import batches
    import oracle
    import runs
    import trajectory
    from answers import parse_json_answer, parse_text_answer, response_format_for
    from oracle import ItemError, redact


# ----------------------------------------------------------------------------- the method (paper §3.2)

def select_oracle(client, args, rec):
    """ATLaS on one trajectory: the oracle is asked the prompt of Appendix D.1 with the budget k = max(1,
    floor(m * T)) of its T steps (m = --ratio, 30 % in the paper); its answer is parsed into at most k critical
    steps, and the output record trains on those alone. An answer that names no usable step is asked again
    (--parse-retries), then the item fails (ItemError): it never gets a made-up selection."""
    prompt, schema, parse, k = oracle_request(args, rec)
    reply = oracle.ask(client, prompt, parse, response_format=schema, model=args.model, max_tokens=args.max_tokens,
                       parse_retries=args.parse_retries, max_retries=args.max_retries, backoff=args.backoff,
                       where=args.base_url or "OpenAI")
    return oracle_record(args, rec, k, reply)


def oracle_request(args, rec):
    """What the oracle is asked for `rec`: (prompt, response format or None, the parser of its answer, budget k).
    The synchronous path and --batch both send this."""
    steps = trajectory.step_indices(rec)
    k = trajectory.budget(len(steps), args.ratio)
    parse = parse_text_answer if args.response_format == "text" else parse_json_answer
    schema = None if args.response_format == "text" else response_format_for(steps, args.response_format, k)
    return build_prompt(rec, k, args.response_format), schema, lambda answer: parse(answer, steps, k), k


def oracle_record(args, rec, k, reply):
    """The output record of `rec` from the oracle's usable answer (an oracle.Reply)."""
    kept, reasons, plan, dropped = reply.parsed
    return trajectory.with_selection(rec, kept, {
        "method": "oracle", "ratio": args.ratio, "budget": k, "model": args.model, "served_by": reply.served_by,
        "response_format": args.response_format, "plan": plan, "reasons": reasons, "dropped": dropped,
        "usage": reply.usage, "attempts": reply.attempts, "answer": reply.answer})


# ----------------------------------------------------------------------------- the prompt (Appendix D.1)

DEFINITION = """\
A critical step is defined as a key action or decision that, if performed correctly, significantly increases \
the likelihood of successfully completing the task. It represents a turning point in the process that influences \
the outcome of subsequent actions. More specifically, critical steps include:
- Plan Creation: Steps where the LLM agent formulates sub-goals by analyzing previous observations and \
considering the final objective, breaking down the larger goal into manageable tasks that guide the agent's \
actions towards the overall outcome.
- Critical Observation: Steps where the LLM agent identifies and analyzes key information from the environment, \
which help agent understand the objective or state and refine its strategy and decision-making towards more \
effective outcomes.
- Critical Action: Steps where the LLM agent takes decisive and impactful actions based on prior observations, \
significantly advancing the process toward the final objectives. These actions are crucial in shaping the \
direction of the agent's strategy and are often pivotal moments that determine progress or failure, ensuring \
that the agent remains on track to achieve the desired outcome.
- Self Correction: Steps where the LLM agent carefully recalls and assesses its previous actions or decisions, \
especially after encountering failure or suboptimal outcomes. During this process, the agent reflects on what \
went wrong, identifies areas for improvement, and adjusts its approach to enhance future performance, which \
helps the agent refine its decision-making and better align with the overall objective.

Task Description: Your task is:
1. Induce a high-level plan or strategy based on the expert conversation, summarizing the key steps needed to \
successfully complete the task.
2. Based on this high-level plan, identify the most critical action steps in the expert conversation. \
A maximum of {budget} steps may be chosen from the conversation.
3. Provide a detailed explanation for choosing these critical steps, specifying which category (e.g., key \
observation, planning, recall, pivotal action) they belong to and why mastering these steps ensures the success \
of the task.
"""
ANSWER_TEXT = """\
Answer Format:
1. **The high-level plan is:** [Summarize the strategy and key steps for task completion]
2. **The critical steps are:** conversation[...]
3. **Reason:** [Explain why these steps are critical, including which category they fall into (key \
observation, planning, recall, pivotal action) and how they enable the player to avoid mistakes in subsequent \
steps]
"""
ANSWER_JSON = """\
Answer Format: a JSON object {"plan": "<the high-level plan>", "critical_steps": [{"index": <i of \
conversation[i]>, "category": "Plan Creation" | "Critical Observation" | "Critical Action" | "Self Correction", \
"reason": "<why this step is critical and how it helps avoid mistakes in subsequent steps>"}]}
"""
# Ours, not the paper's: the turns are labelled by index so the answer names steps unambiguously, and the oracle
# is told which turns are steps (the "Ok." preamble and human turns are not).
CONVERSATION = """
Expert conversation (every turn is labelled conversation[index] (role)):
{turns}

Only the gpt turns conversation[{steps}] are steps that may be chosen. Name every chosen step by its index{how}."""
HOW_TEXT = "; in the Reason, name each chosen step as conversation[index] together with its category"


def build_prompt(rec, budget, response_format="text"):
    """The one user message sent for a trajectory: the paper's prompt with the budget as a number, then the
    conversation with every turn labelled `conversation[i] (role): text`."""
    steps = trajectory.step_indices(rec)
    turns = "\n".join(f"conversation[{i}] ({t['from']}): {t['value']}" for i, t in enumerate(rec["conversations"]))
    answer = ANSWER_TEXT if response_format == "text" else ANSWER_JSON
    how = HOW_TEXT if response_format == "text" else ""
    return (DEFINITION.format(budget=budget) + "\n" + answer +
            CONVERSATION.format(turns=turns, steps=", ".join(map(str, steps)), how=how))


# ----------------------------------------------------------------------------- the ablation selectors

def select_random(args, rec):
    """Table 3: the same budget, steps drawn uniformly; seeded by (seed, item_id) so reruns agree."""
    steps = trajectory.step_indices(rec)
    k = trajectory.budget(len(steps), args.ratio)
    pick = random.Random(f"{args.seed}:{rec['item_id']}").sample(steps, k)
    return trajectory.with_selection(rec, pick, {"method": "random", "ratio": args.ratio, "budget": k,
                                                 "seed": args.seed})


def select_complement(args, rec, ref):
    """Table 2: as many steps as the reference picked, drawn (seeded) from the steps it did not pick; when fewer
    are left, all of them, and the shortfall is recorded and counted."""
    if ref is None:
        raise ItemError(f"not in the reference file {args.reference} (its selection may have failed there)")
    steps, crit = trajectory.step_indices(rec), set(ref["critical_steps"])
    rest = [s for s in steps if s not in crit]
    n = len(crit)
    pick = random.Random(f"{args.seed}:{rec['item_id']}").sample(rest, min(n, len(rest)))
    sel = ref.get("selection", {})
    return trajectory.with_selection(rec, pick, {
        "method": "complement", "reference": args.reference, "reference_method": sel.get("method"),
        "ratio": sel.get("ratio"), "budget": n, "short_by": n - len(pick), "seed": args.seed})


# ----------------------------------------------------------------------------- the run

# the settings a rerun into the same output must share, by method (--force mixes them)
COMPARE = {"oracle": ["method", "ratio", "model"], "random": ["method", "ratio", "seed"],
           "complement": ["method", "reference", "seed"]}


def get_args(argv=None):
    p = argparse.ArgumentParser(description="ATLaS critical-step selection (paper §3.2, Appendix D.1).")
    # ---- data
    p.add_argument("--input", required=True, help="AgentTraj-L as published (a JSON list) or JSONL records")
    p.add_argument("--output", required=True, help="JSONL output, appended record by record; rerun to resume")
    p.add_argument("--force", action="store_true",
                   help="write into an output made with other settings (method, ratio, model, seed, reference)")
    # ---- selection
    p.add_argument("--method", choices=["oracle", "random", "complement"], default="oracle",
                   help="oracle: the paper's LLM selector; random (Table 3) and complement (Table 2): ablations")
    p.add_argument("--ratio", type=float, default=0.3,
                   help="m: at most max(1, floor(m*T)) of a trajectory's T steps are selected (paper: 0.3)")
    p.add_argument("--reference", help="complement: an output of this script whose selection is complemented")
    p.add_argument("--seed", type=int, default=0, help="random/complement: seed, combined with each item_id")
    # ---- oracle
    p.add_argument("--model", default="gpt-4o", help="oracle model name on the server (paper: GPT-4o)")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 for vLLM "
                   "(default: OpenAI; the key comes from OPENAI_API_KEY)")
    p.add_argument("--response-format", choices=["text", "json", "json_object"], default="text",
                   help="text: the paper's free-text answer; json: structured output {plan, critical_steps} as an "
                   "OpenAI json_schema (OpenAI, vLLM, llama.cpp's llama-server); json_object: the same schema as "
                   "{type: json_object, schema} (python -m llama_cpp.server)")
    p.add_argument("--max-tokens", type=int, default=1024, help="answer length limit per request")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a request is abandoned and retried")
    p.add_argument("--max-retries", type=int, default=8, help="retries of one request on 429/5xx/timeouts")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled each retry")
    p.add_argument("--parse-retries", type=int, default=2, help="new requests when an answer names no usable step")
    # ---- Batch API
    p.add_argument("--batch", action="store_true",
                   help="oracle: send the same requests through OpenAI's Batch API (half the price, results within "
                   "24 h); the batch ids are kept in OUTPUT.batch.json, so a rerun resumes the same batches")
    p.add_argument("--poll", type=float, default=60.0, help="--batch: seconds between two looks at the batches")
    # ---- cost
    p.add_argument("--dry-run", action="store_true", help="print requests, prompt tokens and cost; send nothing")
    p.add_argument("--price", help="USD per 1M input,output tokens for the estimate, e.g. 2.5,10 (default: table)")
    return p.parse_args(argv)


def check_args(args):
    """Refuse settings that make no sense (ValueError), before anything is read or sent."""
    if not 0 < args.ratio <= 1:  # also refuses nan
        raise ValueError(f"--ratio must be in (0, 1], got {args.ratio}")
    if args.method == "complement" and not args.reference:
        raise ValueError("--method complement needs --reference (an earlier output of select.py)")
    for flag, value, low in [("--concurrency", args.concurrency, 1), ("--max-tokens", args.max_tokens, 1),
                             ("--max-retries", args.max_retries, 0), ("--parse-retries", args.parse_retries, 0)]:
        if value < low:
            raise ValueError(f"{flag} must be at least {low}, got {value}")
    if args.batch and args.method != "oracle":
        raise ValueError(f"--batch sends the oracle's requests; --method {args.method} sends none")
    if not 0 < args.poll < float("inf"):
        raise ValueError(f"--poll must be a positive number of seconds, got {args.poll}")
    if not args.timeout > 0 or not 0 <= args.backoff < float("inf"):
        raise ValueError(f"--timeout must be positive and --backoff a number of seconds >= 0, got {args.timeout} "
                         f"and {args.backoff}")
    if args.price is not None:
        try:
            price = [float(x) for x in args.price.split(",")]
        except ValueError:
            price = []
        if len(price) != 2 or not all(0 <= x < float("inf") for x in price):
            raise ValueError(f"--price takes two numbers, USD per 1M input and output tokens, e.g. 2.5,10; "
                             f"got {args.price!r}")
        args.price = price
    runs.check_output(args.output, [args.input, args.reference], write=not args.dry_run)  # a dry run writes nothing


def load_inputs(args):
    """The records to select and, for complement, the reference selections by item_id (RecordError if bad)."""
    records = trajectory.read_records(args.input)
    if args.method != "complement":
        return records, {}
    refs = {r["item_id"]: r for r in trajectory.read_records(args.reference)}
    for n, rec in enumerate(records, 1):
        ref = refs.get(rec["item_id"])
        if ref is not None and "critical_steps" not in ref:
            raise trajectory.RecordError(f"{args.reference}: item_id {rec['item_id']!r} has no 'critical_steps': "
                                         f"not an output of a selector")
        if ref is not None and trajectory.step_indices(ref) != trajectory.step_indices(rec):
            raise trajectory.RecordError(
                f"{args.reference}: item_id {rec['item_id']!r} has steps {trajectory.step_indices(ref)} "
                f"but {args.input} record {n} has {trajectory.step_indices(rec)}: not a selection of it")
    return records, refs


def dry_run(args, todo, skipped):
    count, how = oracle.count_tokens(args.model)
    prompt_tokens, answer_tokens = 0, 0
    for rec in todo:
        k = trajectory.budget(len(trajectory.step_indices(rec)), args.ratio)
        prompt_tokens += count(build_prompt(rec, k, args.response_format)) + 7  # + chat-format overhead
        answer_tokens += 150 + 60 * k  # rough: a plan plus one reason per step
    print(f"dry run: {len(todo)} trajectories to select, {skipped} already in {args.output}")
    if args.batch:
        pending = batches.read_batch_state(args.output + ".batch.json") or {"batches": []}
        sent = {i for b in pending["batches"] if not b.get("collected") for i in b["items"]}
        todo = [r for r in todo if str(r["item_id"]) not in sent]
        if sent:
            print(f"{len(sent)} of them are in batches already sent (paid for): {len(todo)} to send")
    if args.method != "oracle":
        print(f"{args.method} selection sends no request: cost $0")
        return
    print(f"requests: {len(todo)} (more if some are retried)")
    print(f"prompt tokens: {prompt_tokens:,} ({how}); answer tokens: ~{answer_tokens:,} (rough: 150 + 60 per step)")
    price = args.price or oracle.PRICES.get(args.model)
    if price is None:
        print(f"cost: unknown for model {args.model!r}; pass --price IN,OUT (USD per 1M tokens)")
        return
    cost = prompt_tokens / 1e6 * price[0] + answer_tokens / 1e6 * price[1]
    print(f"estimated cost: ${cost:,.2f} at ${price[0]}/${price[1]} per 1M input/output tokens "
          f"({'--price' if args.price else args.model + ' list price'})")
    if args.batch:
        chunks, too_big = batches.plan_batches([str(r["item_id"]) for r in todo], batch_line_of(args, todo))
        print(f"Batch API (--batch): ${cost * batches.BATCH_DISCOUNT:,.2f} ({batches.BATCH_DISCOUNT:.0%} of the "
              f"synchronous ${cost:,.2f}), in {len(chunks)} batches" +
              (f"; {len(too_big)} requests too big for a batch file" if too_big else ""))


def make_client(args):
    """The oracle's client (None for the ablations, which send no request); ValueError if it cannot be used."""
    return oracle.make_client(args.base_url, args.timeout) if args.method == "oracle" else None


def select_one(args, client, rec, ref):
    if args.method == "oracle":
        return select_oracle(client, args, rec)
    if args.method == "random":
        return select_random(args, rec)
    return select_complement(args, rec, ref)


def count(stats, rec, err):
    """Add one finished item (its output record, or its ItemError) to the run's numbers."""
    usage = rec["selection"].get("usage") if rec else getattr(err, "usage", None)
    stats["prompt_tokens"] += (usage or {}).get("prompt_tokens", 0)
    stats["completion_tokens"] += (usage or {}).get("completion_tokens", 0)
    if rec is None:
        stats["failed"] += 1
        return
    sel = rec["selection"]
    stats["done"] += 1
    stats["share"] += len(rec["critical_steps"]) / len(rec["steps"])
    stats["requests"] += sel.get("attempts", 0)
    stats["short_by"] += sel.get("short_by", 0)
    stats["dropped"].update(sel.get("dropped", {}))
    stats["categories"].update(str(r.get("category")) for r in sel.get("reasons", []))


def new_stats():
    return {"done": 0, "failed": 0, "share": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "short_by": 0,
            "requests": 0, "dropped": collections.Counter(), "categories": collections.Counter()}


def write_result(out, errors, stats, rec, out_rec, err):
    """One finished item: its record appended to the output, or (None, its ItemError) a line of the errors file."""
    try:
        if out_rec is not None:
            out.append(out_rec)
    except Exception as e:
        out_rec, err = None, ItemError(f"could not be written: {type(e).__name__}: {e}")
    if out_rec is None:
        errors.write(json.dumps({"item_id": rec["item_id"], "reason": redact(err)}, ensure_ascii=False) + "\n")
        errors.flush()
    count(stats, out_rec, err)


def select_all(args, client, todo, refs, out, errors):
    """Select every item of `todo` (--concurrency in flight for the oracle), each written, or sent to the errors
    file with its reason, the moment it is done. An item can only fail alone: any exception while selecting,
    checking or writing it puts it in the errors file. Returns (stats, the FatalError that stopped it or None)."""
    stats = new_stats()
    bar = tqdm(total=len(todo), desc="select", unit="traj", dynamic_ncols=True)

    def work(rec):
        out_rec = select_one(args, client, rec, refs.get(rec["item_id"]))
        trajectory.validate_record(out_rec, "the selected record")  # a selector's bug fails its item, not the run
        return out_rec

    def finish(rec, out_rec, err):  # one at a time: the pool holds its writer's lock
        write_result(out, errors, stats, rec, out_rec, err)
        bar.update(1)
        bar.set_postfix(failed=stats["failed"], refresh=False)

    try:
        return stats, oracle.run_pool(work, finish, todo, args.concurrency if client else 1,
                                      args.base_url or "OpenAI")
    finally:
        bar.close()


def batch_line_of(args, todo):
    """--batch: custom id (the item_id as text) -> the batch input line of that item's request."""
    by_id = {str(r["item_id"]): r for r in todo}

    def line_of(cid):
        prompt, schema, _, _ = oracle_request(args, by_id[cid])
        return batches.batch_line(cid, oracle.chat_request(prompt, model=args.model, max_tokens=args.max_tokens,
                                                          response_format=schema))
    return line_of


def select_batch(args, client, todo, out, errors):
    """--batch: the requests of select_oracle, one answer each, through the Batch API (batches.run_batches); each
    answer is parsed and written as select_all writes it. An unusable answer or a failed request goes to the
    errors file (a rerun, with or without --batch, asks again). Returns (stats, the FatalError or None)."""
    stats, by_id = new_stats(), {str(r["item_id"]): r for r in todo}

    def finish(cid, body, err):
        rec, out_rec = by_id[cid], None
        if err is None:
            try:
                _, _, parse, k = oracle_request(args, rec)
                out_rec = oracle_record(args, rec, k, batches.batch_reply(body, parse))
                trajectory.validate_record(out_rec, "the selected record")
            except ItemError as e:
                err = e
            except Exception as e:  # a selector's bug fails its item, not the run
                err = ItemError(f"{type(e).__name__}: {e}")
        write_result(out, errors, stats, rec, out_rec, err)

    settings = {k: getattr(args, k) for k in ("model", "ratio", "response_format", "max_tokens")}
    return stats, batches.run_batches(client, args.output + ".batch.json", list(by_id), batch_line_of(args, todo),
                                     finish, settings=settings, poll=args.poll, max_retries=args.max_retries,
                                     backoff=args.backoff, where=args.base_url or "OpenAI")


def summarise(args, client, stats, skipped, elapsed):
    n = stats["done"]
    print(f"done {n}, failed {stats['failed']}, skipped {skipped} (already in {args.output})")
    if n:
        print(f"mean share of steps selected: {stats['share'] / n:.3f} (ratio {args.ratio})")
    if client is not None:
        print(f"tokens: {stats['prompt_tokens']:,} prompt + {stats['completion_tokens']:,} completion; "
              f"{stats['requests']} requests for {n} selections; "
              f"dropped indices: " + ", ".join(f"{k} {stats['dropped'][k]}"
                                                for k in ("not_a_step", "duplicate", "over_budget")))
        print("categories: " + (", ".join(f"{c} {v}" for c, v in stats["categories"].most_common()) or "none"))
    if args.method == "complement":
        print(f"complement short by {stats['short_by']} steps in all (the reference left too few unpicked)")
    print(f"throughput: {n + stats['failed']} trajectories in {elapsed:.2f}s = "
          f"{(n + stats['failed']) / max(elapsed, 1e-9):.1f}/s")


def main(argv=None):
    args = get_args(argv)
    try:  # every refusal is one line, and leaves nothing behind
        check_args(args)
        records, refs = load_inputs(args)
        if args.dry_run:
            done = runs.done_keys(args.output)
            todo = [r for r in records if r["item_id"] not in done]
            return dry_run(args, todo, len(records) - len(todo))
        pending = batches.pending_batch_items(args.output + ".batch.json") if args.method == "oracle" else 0
        if pending and not args.batch:
            raise ValueError(f"{args.output}.batch.json: {pending} requests are in Batch API batches not collected "
                             f"yet (paid for): rerun with --batch to collect them, or remove the file to give them up")
        client = make_client(args)
        config = {k: v for k, v in vars(args).items() if k != "force"}
        config["api_key"] = os.environ.get("OPENAI_API_KEY", "") if client else ""  # kept as api_key_set, never as is
        out = runs.open_output(args.output, config, COMPARE[args.method], force=args.force,
                               inputs=[args.input, args.reference])
    except (ValueError, runs.OutputBusy, OSError) as e:  # RecordError is a ValueError; OSError: a full disk
        raise SystemExit(f"select.py: {redact(e)}") from None
    try:  # this run's failures only; a reason that cannot be written as UTF-8 is escaped rather than lost
        errors = open(args.output + ".errors.jsonl", "w", encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        out.close()
        raise SystemExit(f"select.py: {e}") from None
    todo = [r for r in records if r["item_id"] not in out.done]
    skipped = len(records) - len(todo)
    print(f"select.py: {args.method}, {len(records)} trajectories in {args.input}: {skipped} already done in "
          f"{args.output}, {len(todo)} to select" + (f" with {args.model} at {args.base_url or 'OpenAI'}, " +
                                                      ("through the Batch API" if args.batch else
                                                       f"{args.concurrency} in flight") if client else ""))
    t0 = time.time()
    try:
        try:
            stats, fatal = (select_batch(args, client, todo, out, errors) if args.batch else
                            select_all(args, client, todo, refs, out, errors))
        finally:
            out.close()
            errors.close()
    except KeyboardInterrupt:
        print("select.py: interrupted; rerun the same command to resume", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except OSError as e:  # a full disk: every record written so far is complete (one flushed line each)
        raise SystemExit(f"select.py: cannot write {e.filename or args.output} ({e.strerror or e}); the records "
                         f"written are kept: free space and rerun the same command to resume") from None
    if fatal is not None:
        raise SystemExit(f"select.py: stopped: {fatal}")
    summarise(args, client, stats, skipped, time.time() - t0)
    if stats["failed"]:
        raise SystemExit(f"select.py: {stats['failed']} trajectories failed, reasons in {args.output}.errors.jsonl; "
                         f"rerun the same command to retry them" + (" (also without --batch)" if args.batch else ""))


if __name__ == "__main__":
    main()
