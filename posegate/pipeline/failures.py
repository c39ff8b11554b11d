"""Stage failures and the memo that turns one failed build into a skip for each of its dependants."""
from __future__ import annotations

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


class Memo:
    """Runs each build once per key; a failure is remembered and re-raised as StageFailed for dependants.

    ``artifacts`` are the run's supplied artifacts: they decide which convert cases exist.
    """

    def __init__(self, artifacts: dict | None = None):
        self.artifacts = artifacts if artifacts is not None else {}
        self._failures: dict[tuple, StageFailed] = {}

    def once(self, key: tuple, spec, origin, fn):
        """``fn()``, or the StageFailed of an earlier try; ``origin`` (posegate.pipeline.origins) names
        the stage test that builds what ``fn`` builds."""
        if key in self._failures:
            raise self._failures[key]
        try:
            return fn()
        except StageFailed as e:  # an upstream stage's failure: it already names its own test
            self._failures[key] = e
            raise
        except Exception as e:
            failure = StageFailed(origin.stage, origin.test, origin.case(spec, self.artifacts), e, origin.describe())
            self._failures[key] = failure
            raise failure from e
