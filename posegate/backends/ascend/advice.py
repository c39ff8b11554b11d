"""The precision advice in ATC's form: a ``--keep_dtype`` file (one operator name a line) with
``--precision_mode=force_fp16`` (hiascend.com CANN docs, atctool "--keep_dtype":
"--keep_dtype=$HOME/exceptionlist.cfg --precision_mode=force_fp16"). ATC keeps the ONNX node names as
operator names, so the advice's names apply as they are. The file takes names only: GE reads every non-empty
trimmed line as an operator name (or OpType::T) and fails the build on one not in the graph, E10042
(graphengine ge/ir_build/attr_options/keep_dtype_option.cc, KeepDtypeFunc), so the torch modules go to a file
beside it."""
from __future__ import annotations

from pathlib import Path


def atc_args(keep_file: Path) -> list[str]:
    return [f"--keep_dtype={keep_file}", "--precision_mode=force_fp16"]


def write(keep: list[str], folder: Path, modules: dict | None = None) -> dict[str, str]:
    modules = modules or {}
    cfg = folder / "keep_dtype.cfg"
    cfg.write_text("".join(f"{n}\n" for n in keep))
    beside = folder / "keep_dtype_modules.tsv"
    beside.write_text("# keep_dtype.cfg's operators (ONNX node names) and the torch module each computes\n"
                      + "".join(f"{n}\t{modules.get(n) or '-'}\n" for n in keep))
    (folder / "atc_options.txt").write_text(" ".join(atc_args(cfg)) + "\n")
    return {"atc_keep_dtype": str(cfg), "atc_options": str(folder / "atc_options.txt"),
            "atc_keep_dtype_modules": str(beside)}
