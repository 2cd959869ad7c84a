"""RecBole's side of bench/recbole_speed.py: times training epochs of one RecBole model, in RecBole's own venv.

bench/recbole_speed.py runs this file with the Python of the virtualenv it made for RecBole
1.2.1 (CPU torch); it imports only the standard library, torch and recbole, never tfseq or
TensorFlow. It builds RecBole's dataset from the atomic ``<data_path>/<dataset>/<dataset>.inter``
that bench/recbole_speed.py wrote, with the settings of tfseq's ``prefixes`` layout: leave-one-out
(``LS``, time order), histories of at most ``--max_seq_len`` items, RecBole's ``CE`` loss (the full
softmax), no negative sampling, batches of ``--batch_size`` (prefix, next item) examples; the model's
other hyperparameters are RecBole's defaults. It then runs ``Trainer._train_epoch`` ``--epochs``
times, which is what ``Trainer.fit`` runs per epoch before its validation, so no evaluation is
timed, and prints one line ``RECBOLE_SPEED {json}``: the wall and CPU seconds (all threads of
the process) of each epoch, and their means over the epochs after the first, the training
examples and batches per epoch, each epoch's summed loss, and the versions and thread count.

    WORK/recbole-venv/bin/python bench/recbole_runner.py --data_path WORK/recbole-speed/atomic \\
        --dataset beauty --model SASRec --epochs 2

Shims: none is needed with the versions bench/recbole_speed.py pins (numpy 1.26, pandas 2.2,
torch 2.13 CPU). The known incompatibilities of RecBole 1.2.1 with newer libraries are kept
out of the timed path instead of patched:

- ``recbole.quick_start`` imports ``ray``, whose 2.6 release imports ``pkg_resources``, which
  recent setuptools no longer ship: this script builds the run from ``recbole.config``,
  ``recbole.data`` and ``recbole.utils`` as ``run_recbole`` does, and never imports
  ``quick_start``.
- ``torch.load``'s ``weights_only=True`` default (torch 2.6+) would refuse RecBole's checkpoints:
  nothing is saved or loaded here (``_train_epoch`` does not checkpoint).
- numpy 2 dropped ``np.float_`` and friends, which RecBole's ``Config`` aliases at start-up and
  its metrics use: numpy is pinned below 2 (RecBole's own ``compatibility_settings`` then adds
  ``np.float`` and the other removed aliases).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

MARKER = "RECBOLE_SPEED "


def recbole_config(args: argparse.Namespace) -> dict:
    """RecBole's settings of the run: tfseq's ``--all_positions false --batch_size B`` layout."""
    return {
        "data_path": args.data_path,
        "checkpoint_dir": os.path.join(args.workdir, "saved"),
        "gpu_id": "",
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "state": "WARNING",
        "show_progress": False,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",  # Beauty.txt is already 5-core: no filtering
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": args.max_seq_len,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "train_batch_size": args.batch_size,
        "epochs": args.epochs,
        "learning_rate": 0.001,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", required=True, help="the folder that holds <dataset>/<dataset>.inter")
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--model", required=True, choices=["SASRec", "GRU4Rec"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed; the last is the steady one")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_seq_len", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default=".", help="where RecBole writes its logs and checkpoint folder")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(args.threads)
    os.chdir(args.workdir)  # RecBole's log_tensorboard/ goes to the working directory
    start = time.perf_counter()
    config = Config(model=args.model, dataset=args.dataset, config_dict=recbole_config(args))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    setup_seconds = time.perf_counter() - start

    epoch_seconds: list[float] = []
    epoch_cpu_seconds: list[float] = []
    losses: list[float] = []
    for epoch in range(args.epochs):
        start, cpu = time.perf_counter(), time.process_time()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        epoch_seconds.append(time.perf_counter() - start)
        epoch_cpu_seconds.append(time.process_time() - cpu)
        losses.append(float(sum(loss) if isinstance(loss, tuple) else loss))
    steady = slice(1, None) if args.epochs > 1 else slice(None)  # as bench/train_speed.py: after the first
    result = {
        "model": args.model,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": sum(epoch_seconds[steady]) / len(epoch_seconds[steady]),
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "cpu_seconds_per_epoch": sum(epoch_cpu_seconds[steady]) / len(epoch_cpu_seconds[steady]),
        "train_examples": len(train_data._dataset),
        "train_batches": len(train_data),
        "epoch_losses": losses,
        "setup_seconds": setup_seconds,
        "users": dataset.user_num - 1,  # RecBole's id 0 is padding
        "items": dataset.item_num - 1,
        "interactions": dataset.inter_num,
        "device": str(config["device"]),
        "threads": torch.get_num_threads(),
        "config": {k: v for k, v in recbole_config(args).items() if k not in ("data_path", "checkpoint_dir")},
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": sys.version.split()[0]},
    }
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
