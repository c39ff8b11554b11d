"""Stage failures, and the store that turns one failed build or stage test into a skip for each dependant."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from posegate.cases.generate import Case


class StageFailed(RuntimeError):
    """An upstream stage failed: dependants skip with this message instead of failing again.

    ``case`` is the registry's case of the stage test ``test`` that builds the failed artifact (None
    when no case of it does), so the message names a test id the user can run.
    """

    def __init__(self, stage: str, test: str, case: Case | None, error: BaseException | str, building: str = ""):
        self.stage, self.test, self.case = stage, test, case
        where = f"see {self.test_id}" if case is not None else f"no case of {test} builds {building or 'it'}"
        super().__init__(f"{stage} failed ({where}): {_first_line(error)}")

    @property
    def test_id(self) -> str | None:
        return None if self.case is None else f"{self.test}[{self.case.id}]"


def _first_line(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


class StageOutcomes:
    """The run's record of failed stages, one store for both ways a stage fails.

    - A build (weights, an export, a conversion, a load) that raised: ``once`` runs each build once per key
      and re-raises the very StageFailed for every later ask, so each dependant skips naming the stage test
      that builds it. Kept in this process: another xdist worker that needs the build tries it itself, and
      its dependants skip or fail on its own error.
    - A stage test that failed: ``record`` writes it to ``ledger``, a folder every xdist worker of the run
      shares, and ``failed`` finds it, so a dependant on another worker skips where the failure is counted
      once. Without a ledger (a pipeline made outside pytest) there are no stage tests to record.
    """

    def __init__(self, ledger: Path | None = None):
        self.ledger = ledger
        self._builds: dict[tuple, StageFailed] = {}

    def once(self, key: tuple, origin, fn):
        """``fn()``, or the StageFailed of an earlier try; ``origin`` (posegate.pipeline.origins) names
        the stage test that builds what ``fn`` builds."""
        if key in self._builds:
            raise self._builds[key]
        try:
            return fn()
        except StageFailed as e:  # an upstream stage's failure: it already names its own test
            self._builds[key] = e
            raise
        except Exception as e:
            failure = origin.failure(e)
            self._builds[key] = failure
            raise failure from e

    def record(self, nodeid: str, stage: str | None, case: dict, message: str, judged: bool) -> Path:
        """A failed stage test, in the file returned. ``judged``: it ran and its outputs were judged wrong (it
        did not fail to build, load or run). Raises OSError when the ledger cannot be written."""
        entry = {"nodeid": nodeid, "stage": stage, "case": case, "message": message, "judged": judged}
        self.ledger.mkdir(parents=True, exist_ok=True)
        path = self.ledger / f"{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(entry))
        return path

    def failed(self, stage: str, ran: bool = False, **fields) -> dict | None:
        """The first recorded failure of a ``stage`` test whose case has ``fields``; with ``ran``, only one
        that could not run (outputs judged wrong still feed a metric)."""
        if self.ledger is None or not self.ledger.is_dir():
            return None
        for f in sorted(self.ledger.glob("*.json")):
            entry = json.loads(f.read_text())
            if ran and entry.get("judged"):
                continue
            if entry["stage"] == stage and all(entry["case"].get(k) == v for k, v in fields.items()):
                return entry
        return None
