"""Each hospital's privacy budget as the member sees it before training: what the chain says it has spent, the cap,
and whether an increment's epsilon still fits — checked before the first step, so that no increment is trained
that the chain (`OverBudget`) or the general (`integrity.privacy_problem`) would refuse.

The chain counts epsilon in millionths and composes by plain sum (an upper bound on the spending).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tclearn.coalition.context import Coalition, Hospital
from tclearn.coalition.integrity import privacy_rules_problem
from tclearn.errors import ConfigError, PrivacyBudgetExceeded
from tclearn.ledger.values import budget_left, epsilon_of, epsilon_units
from tclearn.records import Privacy


@dataclass(frozen=True)
class Budget:
    """A member's privacy spending on chain (millionths of epsilon); `cap` 0: the coalition keeps no cap."""

    spent: int
    cap: int

    @property
    def left(self) -> int | None:
        """What is left of the cap (None: no cap)."""
        return budget_left(self.spent, self.cap)

    def over(self, charge: int) -> str | None:
        """Why a charge of `charge` would pass the cap (None: it fits, or there is no cap)."""
        if not self.cap or self.spent + charge <= self.cap:
            return None
        return (
            f"it would spend epsilon {epsilon_of(charge):g}, but {epsilon_of(self.spent):g} of the cap "
            f"{epsilon_of(self.cap):g} is spent ({epsilon_of(self.left or 0):g} left)"
        )


def budget_of(co: Coalition, account: str) -> Budget:
    """`account`'s spending and the coalition's cap, as the chain holds them now."""
    return Budget(co.client.privacy_spent(account), co.client.parameters().epsilon_cap)


def check_private_training(co: Coalition, member: Hospital) -> None:
    """`ConfigError` before training when the coalition requires DP and this member's training is not DP-SGD."""
    rules = co.policy.privacy
    if rules is not None and rules.required and not co.backend.private:
        raise ConfigError(
            f"{member.name}: the coalition requires differential privacy (its policy on chain), but this member "
            "trains without it; set [training.privacy] (epsilon or noise_multiplier) in the site's settings"
        )


def admission(co: Coalition, member: Hospital) -> Callable[[Privacy], None]:
    """What a DP increment of `member` is shown before its first step: refused (`ConfigError`) when its privacy
    facts break the coalition's privacy policy, refused (`PrivacyBudgetExceeded`) when its epsilon does not fit
    what is left of the member's budget on chain."""

    def admit(privacy: Privacy) -> None:
        problem = privacy_rules_problem(privacy, co.policy)
        if problem:
            raise ConfigError(f"{member.name}: this increment would be refused by the general: {problem}")
        budget = budget_of(co, member.address)
        over = budget.over(epsilon_units(privacy.epsilon))
        if over:
            raise PrivacyBudgetExceeded(
                f"{member.name}'s privacy budget is spent: {over}. Nothing was trained; the coalition may raise the "
                "cap by proposal (tclearn gov propose policy --epsilon-cap E)",
                spent=epsilon_of(budget.spent),
                cap=epsilon_of(budget.cap),
                charge=privacy.epsilon,
            )

    return admit
