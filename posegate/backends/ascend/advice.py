"""The precision advice in ATC's form: a ``--keep_dtype`` file (one operator name a line) with
``--precision_mode=force_fp16`` (hiascend.com CANN docs, atctool "--keep_dtype":
"--keep_dtype=$HOME/exceptionlist.cfg --precision_mode=force_fp16"). ATC keeps the ONNX node names as
operator names, so the advice's names apply as they are."""
from __future__ import annotations

from pathlib import Path


def atc_args(keep_file: Path) -> list[str]:
    return [f"--keep_dtype={keep_file}", "--precision_mode=force_fp16"]


def write(keep: list[str], folder: Path) -> dict[str, str]:
    cfg = folder / "keep_dtype.cfg"
    cfg.write_text("".join(f"{n}\n" for n in keep))
    (folder / "atc_options.txt").write_text(" ".join(atc_args(cfg)) + "\n")
    return {"atc_keep_dtype": str(cfg), "atc_options": str(folder / "atc_options.txt")}
