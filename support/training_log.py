"""The training log: one CSV row per step (CsvLog), and the loss curve drawn from it."""

import csv
import os

import numpy as np

LOG_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "val_loss", "val_ppl"]


class CsvLog:
    """Appends rows to config.log_filename; on resume, drops rows after the resumed step."""

    def __init__(self, path, resume_step, enabled):
        self.path, self.enabled, self.rows = path, enabled, []
        if not enabled:
            return
        if resume_step and os.path.exists(path):
            with open(path, newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        self.handle = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=LOG_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(self.rows)

    def write(self, **row):
        if self.enabled:
            row = {k: ("" if v is None else v) for k, v in row.items()}
            self.rows.append(row)
            self.writer.writerow(row)

    def flush(self):
        if self.enabled:
            self.handle.flush()

    def close(self):
        if self.enabled:
            self.handle.close()


def plot_loss_curve(rows, path):
    """Training loss (smoothed) and validation loss against steps, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rows if r.get("loss") not in ("", None)]
    if not trained:
        return None
    steps = np.array([int(r["step"]) for r in trained])
    loss = np.array([float(r["loss"]) for r in trained])
    smooth = np.empty_like(loss)
    for i, value in enumerate(loss):  # exponential moving average, as TensorBoard shows it
        smooth[i] = value if i == 0 else 0.98 * smooth[i - 1] + 0.02 * value
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss") not in ("", None)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="training loss")
    ax.plot(steps, smooth, color="tab:blue", label="training loss (smoothed)")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:orange", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("Training progress")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
