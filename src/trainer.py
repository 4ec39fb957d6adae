"""The training loop: pre-training then fine-tuning phases, epochs, logging, validation, early stopping, checkpoints,
resume, SIGTERM.

`train_and_evaluate` builds a `Trainer` and runs it. An epoch repeats three steps: `train_update` runs one
optimizer update over the next update_freq micro-batches, `record_update` moves the run state past it, and
`log_and_checkpoint` writes what is due (log line, an evaluation every eval_every_updates, checkpoint) and says
whether to stop. Each phase is evaluated on its validation set (pre-training: pre_train_valid_dataset when set, else
valid_dataset; fine-tuning: valid_dataset) at every epoch end and every eval_every_updates updates; the best
evaluation is kept as a checkpoint, and early_stop_patience evaluations in a row without a better one end the phase.
The parts are src/device.py, src/dropout.py, src/optimizer.py, src/train_step.py (compiled steps) and
src/run_folder.py (metrics, pid files, resume checks).
"""
import dataclasses
import math
import os
import time

import numpy as np

from src import checkpoint as ckpt
from src.dropout import dropout_key
from src.errors import UserError
from src.optimizer import LossScaler
from src.progress import progress_bar
from src.run_folder import MetricsLog, StopRequest, check_resumable, parameters_digest, rank_pid_file
from src.schedules import learning_rate_at
from src.train_step import build_network, evaluate, to_tensors

PHASES = ("pretrain", "finetune")
# A run whose updates keep overflowing at loss scale 1 (or with a fixed scale) has diverged.
MAX_CONSECUTIVE_OVERFLOWS = 20


@dataclasses.dataclass
class TrainState:
    """Where a phase stands; everything a checkpoint needs to continue exactly."""
    phase: str
    epoch: int = 0               # epoch in progress, 0-based (== epochs when the phase is done)
    batch_position: int = 0      # micro-batches of this epoch already trained
    step: int = 0                # applied optimizer updates in this phase (the schedule's step)
    loss_scale: float = 1.0
    good_steps: int = 0
    skipped_updates: int = 0
    best_valid_loss: float = None
    evals_without_improvement: int = 0  # evaluations since the one of best_valid_loss (early stopping)
    early_stopped: bool = False         # the phase ended after early_stop_patience evaluations without improvement


@dataclasses.dataclass
class Update:
    """One optimizer update over a group of micro-batches, as the host sees it afterwards."""
    micro_batches: int
    lr: float
    totals: np.ndarray  # float64 loss_sum, nll_sum, tokens, stop requests: over the group and all ranks
    finite: bool        # False: skipped (non-finite gradients), nothing applied
    grad_norm: float    # of the unscaled gradients, before clipping

    @property
    def stop(self):
        """Some rank was asked to stop: every rank checkpoints after this same update."""
        return self.totals[3] > 0


@dataclasses.dataclass
class LogInterval:
    """What the next train log line reports: sums over the updates since the last line, and the epoch's latest
    finite gradient norm."""
    sums: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(4))  # loss, nll, tokens, applied updates
    skipped: int = 0
    grad_norm: float = 0.0
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, update):
        if update.finite:
            self.sums += [update.totals[0], update.totals[1], update.totals[2], 1]
            self.grad_norm = update.grad_norm
        else:
            self.skipped += 1

    def restart(self):
        self.sums[:] = 0
        self.start, self.skipped = time.perf_counter(), 0


def global_tokens(batches, number):
    """Target tokens of a global batch over all ranks, from the lengths (no communication needed)."""
    return int(batches.global_tokens(number))


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Trainer:
    """Runs the phases of one run folder. Built by `train_and_evaluate`; tests drive it directly."""

    def __init__(self, config, run_folder, *, device_target="CPU", rank=0, world=1, vocab_checksum="",
                 log_every=10, max_updates=None, console=None, progress=False):
        self.config, self.run_folder = config, run_folder
        self.device_target, self.rank, self.world = device_target, rank, world
        self.vocab_checksum = vocab_checksum
        self.log_every = max(1, log_every)
        self.max_updates = max_updates
        self.updates_this_process = 0
        self.consecutive_overflows = 0
        if rank != 0:
            self.console = lambda text: None
        else:
            self.console = console if console is not None else (lambda text: print(text, flush=True))
        self.progress = progress
        self.is_main = rank == 0
        options = config.checkpoint_options
        self.ckpt_folder = options.ckpt_path if os.path.isabs(options.ckpt_path) else os.path.join(run_folder,
                                                                                                   options.ckpt_path)
        self.checkpoints = ckpt.CheckpointManager(self.ckpt_folder, options.ckpt_prefix, options.keep_ckpt_max)
        self.metrics = MetricsLog(os.path.join(run_folder, "metrics.jsonl"), enabled=self.is_main)
        dataset_config = config.dataset_config
        self.phases = [name for name, path in zip(PHASES, (dataset_config.pre_train_dataset,
                                                           dataset_config.fine_tune_dataset)) if path]
        if not self.phases:
            raise UserError("config: set dataset_config.pre_train_dataset and/or dataset_config.fine_tune_dataset")
        self.stop = StopRequest()
        self.network = None
        self.state = None

    # -- data -------------------------------------------------------------------------------------------------

    def phase_epochs(self, phase):
        dataset_config = self.config.dataset_config
        if phase == "finetune" and dataset_config.fine_tune_epochs:
            return dataset_config.fine_tune_epochs
        return dataset_config.epochs

    def load_data(self):
        """Opens the record sets (streamed: src/dataset.py) and starts the loader's worker processes first, before
        this process reads a record or runs a graph (they are forked)."""
        from src.dataset import open_rows
        from src.workers import loader_pool
        dataset_config = self.config.dataset_config
        if getattr(self, "loader_pool", None) is None:
            self.loader_pool = loader_pool(dataset_config.loader_workers)
        paths = {"pretrain": dataset_config.pre_train_dataset, "finetune": dataset_config.fine_tune_dataset}
        self.train_rows = {phase: open_rows(paths[phase], name=phase) for phase in self.phases}
        valid = open_rows(dataset_config.valid_dataset, name="valid") if dataset_config.valid_dataset else None
        pretrain_valid = open_rows(dataset_config.pre_train_valid_dataset, name="pretrain valid") \
            if dataset_config.pre_train_valid_dataset and "pretrain" in self.phases else None
        # phase -> (records path, RowSet) of its validation set, or None
        self.valid_sets = {phase: (dataset_config.valid_dataset, valid) if valid else None for phase in self.phases}
        if pretrain_valid:
            self.valid_sets["pretrain"] = (dataset_config.pre_train_valid_dataset, pretrain_valid)
        for rows in [*self.train_rows.values(), valid, pretrain_valid]:
            if rows is not None:
                rows.check_vocabulary(self.config.model_config.vocab_size)

    def dynamic_masking(self, phase):
        dataset_config = self.config.dataset_config
        if dataset_config.masking != "dynamic":
            return None
        from src.dataset import DynamicMasking
        if phase == "pretrain":
            return DynamicMasking(language_model=dataset_config.language_model, mask_ratio=dataset_config.mask_ratio,
                                  vocab_size=self.config.model_config.vocab_size)
        if dataset_config.noise_prob > 0:
            return DynamicMasking(language_model="pair", noise_prob=dataset_config.noise_prob)
        return None

    def batches(self, phase, epoch):
        from src.dataset import iterate_batches
        dataset_config = self.config.dataset_config
        return iterate_batches(self.train_rows[phase], batch_size=dataset_config.batch_size,
                               max_tokens=dataset_config.max_tokens,
                               bucket_boundaries=dataset_config.bucket_boundaries, shuffle=dataset_config.shuffle,
                               seed=self.config.model_config.random_seed, epoch=epoch, num_shards=self.world,
                               shard_id=self.rank, dynamic=self.dynamic_masking(phase),
                               window_rows=dataset_config.window_rows, pool=self.loader_pool,
                               vocab_size=self.config.model_config.vocab_size)

    def valid_batches(self, phase=None):
        """The eval batches of `phase`'s validation set (default: the current phase's), or None without one."""
        from src.dataset import iterate_batches
        dataset_config = self.config.dataset_config
        valid_set = self.valid_sets[phase or self.state.phase]
        if valid_set is None:
            return None
        return iterate_batches(valid_set[1], batch_size=dataset_config.batch_size,
                               bucket_boundaries=dataset_config.bucket_boundaries, shuffle=False, eval_mode=True,
                               window_rows=dataset_config.window_rows, pool=self.loader_pool,
                               vocab_size=self.config.model_config.vocab_size)

    # -- checkpoints ------------------------------------------------------------------------------------------

    def metadata(self, kind="training"):
        state = dataclasses.asdict(self.state)
        return {"kind": kind, **state, "phases": self.phases, "world_size": self.world,
                "metrics_lines": self.metrics.lines, "config": self.config.to_dict(),
                "vocab_checksum": self.vocab_checksum}

    def save_training_checkpoint(self):
        if self.is_main:
            path = self.checkpoints.save(self.network.model, self.network.optimizer, self.metadata())
            self.console(f"checkpoint {path}")

    def best_name(self, phase):
        return "pretrain_best.ckpt" if phase == "pretrain" and phase != self.phases[-1] else "best.ckpt"

    def save_best(self):
        if self.is_main:
            path = os.path.join(self.ckpt_folder, self.best_name(self.state.phase))
            ckpt.save_checkpoint(path, self.network.model, None, self.metadata(kind="weights"))

    def resume_point(self):
        """(phase, checkpoint path, metadata) of the latest checkpoint, or None."""
        path = self.checkpoints.latest()
        if path is None:
            return None
        _, _, metadata = ckpt.read_checkpoint(path)
        check_resumable(path, metadata, config=self.config, phases=self.phases, world=self.world,
                        vocab_checksum=self.vocab_checksum)
        return metadata["phase"], path, metadata

    def has_checkpoints(self):
        return self.checkpoints.latest() is not None

    # -- one phase --------------------------------------------------------------------------------------------

    def start_phase(self, phase, *, weights_from=None, resume_from=None, previous_model=None):
        """Builds the phase's network; weights from a resume checkpoint, the previous phase, or existed_ckpt."""
        self.network = build_network(self.config, hide_masked_source=phase == "pretrain",
                                     device_target=self.device_target, distributed=self.world > 1)
        scaler = LossScaler.from_config(self.config.loss_scale_config)
        self.state = TrainState(phase=phase, loss_scale=scaler.scale)
        if resume_from is not None:
            path, metadata = resume_from
            weights, optimizer_state, _ = ckpt.read_checkpoint(path)
            ckpt.set_model_weights(self.network.model, weights, path)
            ckpt.load_optimizer_state(self.network.optimizer, self.network.model, optimizer_state, path)
            fields = {field.name for field in dataclasses.fields(TrainState)}
            self.state = TrainState(**{key: value for key, value in metadata.items() if key in fields})
        elif previous_model is not None:
            ckpt.set_model_weights(self.network.model, ckpt.model_weights(previous_model), "the pre-trained model")
        elif weights_from:
            ckpt.load_model_weights(self.network.model, weights_from, self.vocab_checksum)
            self.console(f"{phase}: initial weights from {weights_from}")

    def run_phase(self):
        """Trains the current phase to its last epoch; returns False when stopped early (checkpoint written)."""
        phase, state = self.state.phase, self.state
        epochs = self.phase_epochs(phase)
        scaler = LossScaler.from_config(self.config.loss_scale_config)
        scaler.scale, scaler.good_steps = state.loss_scale, state.good_steps
        self.scaler = scaler
        self.phase_clock = (time.perf_counter(), state.epoch, state.batch_position)
        while state.epoch < epochs and not state.early_stopped:
            if not self.run_epoch(epochs):
                return False
            if state.early_stopped:  # inside the epoch: its checkpoint is written
                break
            state.epoch += 1
            state.batch_position = 0
            self.end_of_epoch()
        return True

    # -- one epoch --------------------------------------------------------------------------------------------

    def run_epoch(self, epochs):
        """Trains the rest of the current epoch; returns False when stopped early (checkpoint written)."""
        state = self.state
        batches = self.batches(state.phase, state.epoch)
        self.epoch_batches = len(batches)
        self.network.model.set_train(True)
        interval = LogInterval()
        stopped = False
        desc = f"{state.phase} epoch {state.epoch + 1}"
        with progress_bar(total=len(batches), initial=state.batch_position, desc=desc, unit="batch",
                          enabled=self.progress and self.is_main, leave=False) as bar:
            while state.batch_position < len(batches) and not stopped and not state.early_stopped:
                update = self.train_update(batches)
                self.record_update(update, interval)
                bar.update(update.micro_batches)
                stopped = self.log_and_checkpoint(update, interval, epochs)
        if state.early_stopped and not stopped:
            self.save_training_checkpoint()  # the phase's end: a resumed run goes on with the next phase
        if stopped:
            self.save_training_checkpoint()
            self.console(f"stopped at {state.phase} step {state.step} (epoch {state.epoch + 1}, batch "
                         f"{state.batch_position}/{len(batches)}); continue with --resume")
        return not stopped

    def train_update(self, batches):
        """One optimizer update over the next update_freq micro-batches of the epoch (fewer at its end).

        Every micro-batch's loss is weighted by loss_scale * ranks / target tokens of the whole group over all
        ranks, so every target token counts the same. Changes the weights and optimizer state only: the host-side
        run state (TrainState, loss scale) is moved by `record_update`.
        """
        state, train_step = self.state, self.network.train_step
        first = state.batch_position
        group = list(range(first, min(first + self.config.learn_rate_config.update_freq, len(batches))))
        scale = self.scaler.scale
        loss_weight = scale * self.world / max(sum(global_tokens(batches, number) for number in group), 1)
        partial = np.zeros(4, dtype=np.float64)  # this rank's loss_sum, nll_sum, tokens, stop request
        for number in group[:-1]:
            sums = train_step.accumulate(to_tensors(batches.batch(number)), loss_weight, self.micro_batch_key(number))
            partial[:3] += [float(value.asnumpy()) for value in sums]
        lr = learning_rate_at(self.config.learn_rate_config, state.step)
        partial[3] = 1.0 if self.stop_requested() else 0.0
        totals, finite, grad_norm = train_step.update(to_tensors(batches.batch(group[-1])), loss_weight, 1.0 / scale,
                                                      lr, self.micro_batch_key(group[-1]), partial)
        return Update(len(group), lr, totals.asnumpy().astype(np.float64), bool(finite.asnumpy()),
                      float(grad_norm.asnumpy()))

    def micro_batch_key(self, number):
        """The dropout key of micro-batch `number` of the current epoch on this rank."""
        state = self.state
        return dropout_key(self.config.model_config.random_seed, PHASES.index(state.phase), state.epoch, number,
                           self.rank)

    def stop_requested(self):
        """True once SIGTERM arrived; --max_updates sends it before this process's last update."""
        if self.max_updates is not None and self.updates_this_process + 1 >= self.max_updates:
            self.stop.raise_stop()  # max_updates takes the SIGTERM path: this update is the last
        return self.stop.requested

    def record_update(self, update, interval):
        """Moves the run state past `update` (data position, loss scale, step or skip) and adds it to `interval`;
        UserError when the updates keep overflowing at the lowest loss scale."""
        state = self.state
        self.updates_this_process += 1
        state.batch_position += update.micro_batches
        self.scaler.update(update.finite)
        state.loss_scale, state.good_steps = self.scaler.scale, self.scaler.good_steps
        interval.add(update)
        if update.finite:
            state.step += 1
            self.consecutive_overflows = 0
        else:
            state.skipped_updates += 1
            self.consecutive_overflows += 1
            if self.scaler.at_floor and self.consecutive_overflows >= MAX_CONSECUTIVE_OVERFLOWS:
                raise UserError(f"training diverged: {self.consecutive_overflows} updates in a row had non-finite "
                                f"gradients at loss scale {self.scaler.scale:g} (lower learn_rate_config.lr?)")

    def log_and_checkpoint(self, update, interval, epochs):
        """Writes the train log line, the evaluation and the checkpoint due after `update`; True when the run stops
        here (its checkpoint is written by the caller, after the progress bar is closed). The evaluation comes before
        the stop, so a stopped run's checkpoint holds its result (an epoch's last update leaves it to the epoch end).
        """
        state = self.state
        end_of_epoch = state.batch_position >= self.epoch_batches
        if update.finite and state.step % self.log_every == 0 or end_of_epoch or update.stop:
            if interval.sums[3] > 0 or interval.skipped:
                self.log_train(interval, update.lr, epochs)
            interval.restart()
        every = self.config.checkpoint_options.eval_every_updates
        if every and update.finite and state.step % every == 0 and not end_of_epoch:
            self.validate(epoch=state.epoch + 1, epoch_end=False)
        if update.stop:
            return True
        if update.finite and state.step % self.config.checkpoint_options.save_ckpt_steps == 0:
            self.save_training_checkpoint()
        return False

    # -- logging and the end of an epoch ----------------------------------------------------------------------

    def eta_seconds(self, epochs):
        start, start_epoch, start_position = self.phase_clock
        batches = max(self.epoch_batches, 1)
        done = (self.state.epoch - start_epoch) + (self.state.batch_position - start_position) / batches
        remaining = (epochs - self.state.epoch) - self.state.batch_position / batches
        return (time.perf_counter() - start) / done * remaining if done > 0 else float("nan")

    def log_train(self, interval, lr, epochs):
        state, sums = self.state, interval.sums
        seconds = time.perf_counter() - interval.start
        tokens = max(sums[2], 1.0)
        applied = sums[3] > 0  # False when every update of the interval overflowed
        record = {"type": "train", "phase": state.phase, "epoch": state.epoch + 1, "step": state.step,
                  "batch": state.batch_position, "batches": self.epoch_batches,
                  "loss": sums[0] / tokens if applied else None, "nll": sums[1] / tokens if applied else None,
                  "ppl": math.exp(min(sums[1] / tokens, 700.0)) if applied else None,
                  "lr": lr, "loss_scale": self.scaler.scale,
                  "grad_norm": interval.grad_norm, "tokens_per_s": sums[2] / max(seconds, 1e-9),
                  "updates": int(sums[3]), "skipped": interval.skipped, "eta_s": self.eta_seconds(epochs),
                  "time": time.time()}
        if not math.isfinite(record["eta_s"]):
            record["eta_s"] = None
        self.metrics.write(record)
        if self.is_main:
            eta = format_duration(record["eta_s"]) if record["eta_s"] is not None else "?"
            losses = f"loss {record['loss']:.4f} nll {record['nll']:.4f}" if applied else "no finite update"
            skipped = f" skipped {interval.skipped}" if interval.skipped else ""
            self.console(f"{state.phase} epoch {state.epoch + 1} step {state.step} "
                         f"batch {state.batch_position}/{self.epoch_batches} {losses} lr {lr:.3e} "
                         f"scale {self.scaler.scale:g} {record['tokens_per_s']:.0f} tok/s eta {eta}{skipped}")

    def validate(self, epoch, epoch_end):
        """Evaluates the phase's validation set (if any): logs it, keeps the best checkpoint, counts evaluations
        without improvement and marks the phase early-stopped after early_stop_patience of them in a row. `epoch`
        (1-based) is the one just finished at an epoch end, the one in progress otherwise."""
        state, batches = self.state, self.valid_batches()
        if batches is None:
            return
        result = evaluate(self.network.eval_step, batches, self.network.model)
        improved = bool(state.best_valid_loss is None or result["loss"] < state.best_valid_loss)
        state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
        patience = self.config.checkpoint_options.early_stop_patience
        state.early_stopped = bool(patience) and state.evals_without_improvement >= patience
        self.metrics.write({"type": "valid", "phase": state.phase, "epoch": epoch, "step": state.step, **result,
                            "dataset": self.valid_sets[state.phase][0], "epoch_end": epoch_end, "improved": improved,
                            "evals_without_improvement": state.evals_without_improvement,
                            "early_stopped": state.early_stopped, "time": time.time()})
        if self.is_main:
            self.console(f"{state.phase} epoch {epoch} step {state.step} valid loss {result['loss']:.4f} "
                         f"nll {result['nll']:.4f} ppl {result['ppl']:.2f}" + (" (best)" if improved else ""))
            if state.early_stopped:
                self.console(f"{state.phase}: early stop at step {state.step}, {patience} evaluations without a "
                             f"lower valid loss than {state.best_valid_loss:.4f}")
        if improved:
            state.best_valid_loss = result["loss"]
            self.save_best()

    def end_of_epoch(self):
        state = self.state
        if self.valid_sets[state.phase] is not None:
            self.validate(epoch=state.epoch, epoch_end=True)
        else:
            self.save_best()  # without a valid set, best.ckpt holds the latest epoch's weights
        if self.is_main and state.epoch in self.config.checkpoint_options.best_at_epochs:
            best = os.path.join(self.ckpt_folder, self.best_name(state.phase))
            if os.path.exists(best):
                snapshot = best[:-len(".ckpt")] + f"_epoch{state.epoch}.ckpt"
                ckpt.copy_checkpoint(best, snapshot)
        self.save_training_checkpoint()

    # -- the whole run ----------------------------------------------------------------------------------------

    def run(self, resume=False):
        """Every phase in order; returns a summary dict (`stopped` True when interrupted).

        Everything that can fail on the user's input (config, data, checkpoints) is checked before the run folder
        is written to, so a failed start leaves no output behind.
        """
        started = time.perf_counter()
        resume_point = self.resume_point() if resume else None
        if not resume and self.has_checkpoints():
            raise UserError(f"run folder {self.run_folder} already holds checkpoints in {self.ckpt_folder}: "
                            "pass --resume to continue it or choose another --output")
        self.load_data()
        first = self.phases.index(resume_point[0]) if resume_point else 0
        if resume_point is not None:
            self.start_phase(self.phases[first], resume_from=resume_point[1:])
        else:
            self.start_phase(self.phases[0], weights_from=self.config.checkpoint_options.existed_ckpt)
        os.makedirs(self.run_folder, exist_ok=True)
        if self.is_main:
            self.config.save(os.path.join(self.run_folder, "config.json"))
        if resume_point is None:
            if resume:
                self.console(f"no checkpoint in {self.ckpt_folder}: starting from the beginning")
            self.metrics.truncate(0)
        else:
            self.metrics.truncate(resume_point[2]["metrics_lines"])
            self.console(f"resuming {resume_point[1]}: {self.state.phase} epoch {self.state.epoch + 1}, "
                         f"batch {self.state.batch_position}, step {self.state.step}")
        with self.stop, rank_pid_file(self.run_folder, self.rank):
            for index, phase in enumerate(self.phases[first:], first):
                if index > first:
                    self.start_phase(phase, previous_model=self.network.model)
                if not self.run_phase():
                    return {"stopped": True, "phase": phase, "step": self.state.step,
                            "seconds": time.perf_counter() - started}
        summary = {"stopped": False, "phase": self.state.phase, "step": self.state.step,
                   "best_valid_loss": self.state.best_valid_loss, "seconds": time.perf_counter() - started,
                   "parameters_sha256": parameters_digest(self.network.model)}
        best = f"best valid loss {summary['best_valid_loss']:.4f}, " if summary["best_valid_loss"] is not None else ""
        self.console(f"done: {', '.join(self.phases)}; {self.state.step} updates in the last phase; {best}"
                     f"{format_duration(summary['seconds'])}; checkpoints in {self.ckpt_folder}")
        return summary


def train_and_evaluate(config, run_folder, *, resume=False, device_target="CPU", rank=0, world=1,
                       vocab_checksum="", log_every=10, max_updates=None, console=None, progress=False):
    """Trains the run described by `config` into `run_folder` (config.json, metrics.jsonl, checkpoints/)."""
    trainer = Trainer(config, run_folder, device_target=device_target, rank=rank, world=world,
                      vocab_checksum=vocab_checksum, log_every=log_every, max_updates=max_updates,
                      console=console, progress=progress)
    return trainer.run(resume=resume)
