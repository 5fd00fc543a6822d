"""The search's time budget (``search.time_budget``): one object shared by the searcher that stops asking, the PBT
population that stops starting members and the stopper that ends running trials at their next evaluation."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Budget"]


@dataclass
class Budget:
    """``deadline`` is a ``time.time()`` value or None (no budget); ``hit`` says whether the budget ended anything."""

    deadline: float | None = None
    hit: bool = False

    @classmethod
    def starting(cls, started: float, seconds: float | None) -> Budget:
        return cls(deadline=started + seconds if seconds else None)

    def spent(self) -> bool:
        """True (and remembered in ``hit``) once the deadline has passed."""
        if self.deadline is not None and time.time() >= self.deadline:
            self.hit = True
        return self.hit

    def stop_trial(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Tune's ``stop`` callable: past the budget, each running trial stops at its next evaluation."""
        return self.spent()

    def stopper(self) -> Callable[[str, Mapping[str, Any]], bool] | None:
        return None if self.deadline is None else self.stop_trial
