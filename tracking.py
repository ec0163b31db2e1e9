"""Optional run tracking: `--report-to` mirrors what a stage writes to its files into trackers a researcher already
watches. Off by default ("none"); the files (train.py's metrics.jsonl and config.json, evaluate.py's results) stay
the record, a tracker only shows them.

    python train.py ... --report-to tensorboard            # <output>/tensorboard; tensorboard --logdir <output>
    python train.py ... --report-to wandb,tensorboard      # WANDB_MODE=offline works with no network
    python evaluate.py ... --report-to trackio             # local-first (trackio show)

    tensorboard  torch.utils.tensorboard's SummaryWriter, event files under <folder>/tensorboard (local, offline)
    wandb        wandb.init(project, name, config, dir=<folder>); a --resume continues the same run (its id is
                 derived from the output's path)
    trackio      trackio.init(project, name, config): Hugging Face's local-first, wandb-compatible tracker

The packages are extras (pip install -r requirements-tracking.txt), never imported unless asked for; a tracker
whose package is missing is refused in one line before anything runs. Rows are logged with their own step;
non-numeric fields are left out.
"""
import hashlib
import json
import os

KINDS = ("tensorboard", "wandb", "trackio")
PROJECT = os.environ.get("ATLAS_TRACKING_PROJECT", "atlas")


def parse(text):
    """--report-to "none" | a comma-separated list of KINDS -> [kinds]; ValueError (one line) for an unknown one
    or a missing package."""
    kinds = [k.strip() for k in (text or "none").split(",") if k.strip() and k.strip() != "none"]
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"--report-to {k}: expected none or a comma-separated list of {', '.join(KINDS)}")
        try:
            __import__(k)  # each tracker's package has its name
        except ImportError:
            raise ValueError(f"--report-to {k}: the {k} package is not installed (an extra: pip install "
                             f"-r requirements-tracking.txt)") from None
    return list(dict.fromkeys(kinds))


def numbers(row):
    """The numeric fields of a row (bools as 0/1), the only ones a tracker plots."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not (isinstance(v, float) and v != v)}


class Trackers:
    """The trackers of one run: log(row, step) and close(); none at all when `kinds` is empty."""

    def __init__(self, kinds, folder, name, config):
        self.sinks = []
        config = json.loads(json.dumps(config, default=str))  # what the settings file holds
        run_id = hashlib.sha256(os.path.abspath(folder).encode()).hexdigest()[:16]
        for kind in kinds:
            if kind == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter
                writer = SummaryWriter(log_dir=os.path.join(folder, "tensorboard"))
                writer.add_text("config", "```\n" + json.dumps(config, indent=1) + "\n```")
                self.sinks.append(("tensorboard", writer))
            elif kind == "wandb":
                import wandb
                run = wandb.init(project=PROJECT, name=name, config=config, dir=folder, id=run_id, resume="allow")
                self.sinks.append(("wandb", run))
            elif kind == "trackio":
                import trackio
                trackio.init(project=PROJECT, name=name, config=config, resume="allow")
                self.sinks.append(("trackio", trackio))

    def log(self, row, step):
        values = numbers(row)
        for kind, sink in self.sinks:
            if kind == "tensorboard":
                for k, v in values.items():
                    sink.add_scalar(k, v, step)
            else:
                sink.log(values, step=step)

    def close(self):
        for kind, sink in self.sinks:
            if kind == "tensorboard":
                sink.close()
            else:
                sink.finish()
        self.sinks = []
