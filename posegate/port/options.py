"""``--port=MODEL:KIND=PATH``: the team's own files, per model and stage, checked before collection."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("inputs", "info", "outputs", "results")
FOLDERS = ("inputs", "outputs")
USAGE = "MODEL:KIND=PATH with KIND one of inputs, info, outputs[:fp16|:fp32], results"


def _kinds(layout) -> tuple[str, ...]:
    # a layout with copies (HigherHRNet's flip folder) adds one inputs and one outputs folder per copy
    return KINDS + tuple(f"{k}-{c}" for c in layout.copies for k in FOLDERS)


class PortOptionError(ValueError):
    """A malformed --port value or a wrong path: one line naming the value and what is wrong."""


@dataclass
class PortFiles:
    """What one model's port handed over; a kind not given is not audited."""
    model: str
    paths: dict = field(default_factory=dict)  # kind -> Path
    precision: str = "fp32"  # what the device computed in (outputs:fp16)

    def get(self, kind: str) -> Path | None:
        return self.paths.get(kind)


def parse(values, specs: dict) -> dict[str, PortFiles]:
    """Model name -> PortFiles from the repeated --port values; PortOptionError on the first bad one."""
    ports: dict[str, PortFiles] = {}
    for value in values or ():
        where, sep, path = value.partition("=")
        parts = where.split(":")
        if not sep or not path or len(parts) not in (2, 3):
            raise PortOptionError(f"--port={value}: expected {USAGE}")
        model, kind = parts[0], parts[1]
        spec = specs.get(model)
        if spec is None:
            raise PortOptionError(f"--port={value}: no model {model!r}; known: {', '.join(sorted(specs))}")
        if getattr(spec, "port", None) is None:
            with_port = sorted(n for n, s in specs.items() if getattr(s, "port", None) is not None)
            raise PortOptionError(f"--port={value}: {model} declares no port layout (models with one: "
                                  f"{', '.join(with_port)})")
        if kind not in _kinds(spec.port):
            extra = "".join(f", {k}" for k in _kinds(spec.port)[len(KINDS):])
            raise PortOptionError(f"--port={value}: unknown kind {kind!r}; expected {USAGE}"
                                  + (f" (for {model} also{extra[1:]})" if extra else ""))
        if kind == "info" and spec.port.side is None:
            raise PortOptionError(f"--port={value}: {model}'s port writes no side file")
        if kind == "results" and not spec.port.results:
            raise PortOptionError(f"--port={value}: {model}'s postprocess writes no results file (it prints "
                                  "its metric); audit its inputs and outputs")
        files = ports.setdefault(model, PortFiles(model))
        if len(parts) == 3:
            if kind != "outputs" or parts[2] not in spec.precisions:  # a copy runs in the outputs precision
                raise PortOptionError(f"--port={value}: a precision is given with outputs only, one of "
                                      f"{', '.join(spec.precisions)} for {model}")
            files.precision = parts[2]
        if kind in files.paths:
            raise PortOptionError(f"--port={value}: {model}:{kind} is given twice")
        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise PortOptionError(f"--port={value}: {resolved} does not exist")
        folder = kind.split("-")[0] in FOLDERS
        if folder and not resolved.is_dir():
            raise PortOptionError(f"--port={value}: {kind} is a folder (the files the port's scripts wrote), "
                                  f"{resolved} is a file")
        if not folder and not resolved.is_file():
            raise PortOptionError(f"--port={value}: {kind} is a file, {resolved} is a folder")
        files.paths[kind] = resolved
    for model, files in ports.items():
        layout = specs[model].port
        for stage in FOLDERS:
            given = [k for k in layout.folders(stage) if k in files.paths]
            if given and len(given) < len(layout.folders(stage)):
                lacking = [k for k in layout.folders(stage) if k not in files.paths]
                raise PortOptionError(f"--port={model}:{given[0]}: {model}'s port writes its {stage} in "
                                      f"{len(layout.folders(stage))} folders ({', '.join(layout.folders(stage))}); "
                                      f"also give --port={model}:{lacking[0]}=DIR")
    return ports
