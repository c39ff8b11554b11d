"""``python -m posegate.training``: prepare labels, draw the validation subset, train (1 process or DDP).

    python -m posegate.training prepare-labels --labels COCO/annotations/person_keypoints_train2017.json \
        --out prepared_train_labels.json
    python -m posegate.training make-val-subset --labels COCO/annotations/person_keypoints_val2017.json \
        --images COCO/val2017 --out val_subset
    python -m posegate.training train --step 1 --labels prepared_train_labels.json --images COCO/train2017 \
        --val val_subset --mobilenet mobilenet_sgd_68.848.pth.tar --out step_1 [--nproc 8 | torchrun]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from posegate import registry
from posegate.datasets.coco import CocoKeypointDataset
from posegate.training import distributed, optim
from posegate.training import labels as labels_mod
from posegate.training.loop import TrainConfig, train_process
from posegate.training.recipe import default_recipe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m posegate.training", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-labels", help="COCO person keypoints -> prepared training labels (JSON)")
    prep.add_argument("--labels", type=Path, required=True, help="person_keypoints_train2017.json")
    prep.add_argument("--out", type=Path, default=Path("prepared_train_labels.json"))
    val = sub.add_parser("make-val-subset", help="the port's 250-image quick-validation annotation file")
    val.add_argument("--labels", type=Path, required=True, help="person_keypoints_val2017.json")
    val.add_argument("--images", type=Path, help="the val2017 image folder, linked into the subset folder")
    val.add_argument("--out", type=Path, default=Path("val_subset"),
                     help="folder: annotations/person_keypoints_val2017.json (+ val2017 link), usable as --val")
    val.add_argument("--size", type=int, default=labels_mod.VAL_SUBSET_SIZE)

    t = sub.add_parser("train", help="train one step of the three-step recipe",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--step", type=int, choices=(1, 2, 3), default=1,
                   help="1: from MobileNetV1 ImageNet weights; 2: weights only from step 1; 3: weights only from "
                        "step 2 with 3 refinement stages")
    t.add_argument("--labels", type=Path, required=True, help="prepared labels, or the COCO train annotation file")
    t.add_argument("--images", type=Path, required=True, help="the train2017 image folder")
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    t.add_argument("--mobilenet", type=Path, help="step 1: mobilenet_sgd_68.848.pth.tar")
    t.add_argument("--init-weights", type=Path, help="steps 2, 3: the previous step's model_best.pth")
    t.add_argument("--resume", type=Path, help="continue a run from one of its checkpoints (either layout)")
    t.add_argument("--models-package", default="models",
                   help="the package whose model specs register; the one declaring a training recipe is trained")
    t.add_argument("--val", type=Path, help="a COCO folder (annotations/person_keypoints_val2017.json + val2017/)")
    t.add_argument("--val-images", type=int, help="validate on its first N image ids only (a quicker check)")
    t.add_argument("--batch-size", type=int, default=80, help="per process")
    t.add_argument("--batches-per-iter", type=int, default=1, help="gradient accumulation")
    t.add_argument("--lr", type=float, default=optim.BASE_LR, help="base lr for one process")
    t.add_argument("--no-scale-lr", action="store_true", help="do not multiply the lr by the world size")
    t.add_argument("--epochs", type=int, default=optim.EPOCHS)
    t.add_argument("--crop", type=int, default=368)
    t.add_argument("--workers", type=int, default=8, help="data-loader workers per process (kept across epochs)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=5000, help="iterations, upstream layout; 0: never")
    t.add_argument("--port-every", type=int, default=5, help="epochs: validation, checkpoint.pth, model_best.pth")
    t.add_argument("--amp", choices=("off", "auto", "static"), default="off",
                   help="auto: fp16 + GradScaler on CUDA/NPU, bf16 on CPU; static: fixed loss scale")
    t.add_argument("--loss-scale", type=float, default=16.0, help="the static loss scale (apex O1 in the port)")
    t.add_argument("--device", choices=("cpu", "cuda", "npu"), help="default: what is available")
    t.add_argument("--nproc", type=int, default=1, help="local DDP processes to spawn (or launch with torchrun)")
    t.add_argument("--max-iters", type=int, help="stop after this many iterations (a throughput run)")
    t.add_argument("--log-every", type=int, default=100)
    return p


def _config(a):
    val = None
    if a.val:
        val = CocoKeypointDataset(a.val)
    return TrainConfig(labels=a.labels, images=a.images, out_dir=a.out, step=a.step, mobilenet=a.mobilenet,
                       init_weights=a.init_weights, resume=a.resume, batch_size=a.batch_size,
                       batches_per_iter=a.batches_per_iter, base_lr=a.lr, scale_lr=not a.no_scale_lr,
                       epochs=a.epochs, crop=a.crop, workers=a.workers, seed=a.seed,
                       checkpoint_every=a.checkpoint_every, port_every=a.port_every, val_dataset=val,
                       val_images=a.val_images, amp=a.amp, static_scale=a.loss_scale, device=a.device,
                       max_iters=a.max_iters, log_every=a.log_every,
                       recipe=default_recipe(registry.load_package(a.models_package)))


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    if a.command == "prepare-labels":
        prepared = labels_mod.prepare_labels(labels_mod.read_coco(a.labels), str(a.labels))
        labels_mod.save_labels(prepared, a.out)
        print(f"{a.out}: {len(prepared)} main people")
    elif a.command == "make-val-subset":
        subset = labels_mod.val_subset(labels_mod.read_coco(a.labels), a.size)
        target = a.out / "annotations" / "person_keypoints_val2017.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(subset))
        if a.images and not (a.out / "val2017").exists():
            (a.out / "val2017").symlink_to(a.images.resolve(), target_is_directory=True)
        print(f"{target}: {len(subset['images'])} images, {len(subset['annotations'])} annotations")
    else:
        cfg = _config(a)
        if a.nproc > 1:
            distributed.spawn(train_process, a.nproc, cfg)  # the target must be importable by the children
        else:
            train_process(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
