"""Who may remove what, automatically: the decision for one new request, given what was already removed today.

A request is applied without a person only if it is authentic enough and within a limit keyed on something a
forger cannot pick for free:

- ``verified`` (aligned passing DKIM, ``takedown.authenticity``): automatic while its signing organization
  (the organizational domain of ``d=``, so ``a.example.org`` and ``b.example.org`` share one budget) stays within
  ``ids_per_domain_per_day`` image IDs in any 24 hours;
- ``unverified`` (unsigned: the From may be anybody): automatic while *all* unverified mail together stays
  within ``unverified_ids_per_day`` image IDs in any 24 hours (default 10): a flood of forged mail can take down
  at most that many images a day, and the rest waits for a person;
- ``failed`` (a signature that fails, cannot be checked, is not aligned with From, or contradicting results):
  never automatic.

Everything not automatic goes to ``review`` with the reason; ``veilset takedown review`` lists it and records
the operator's decision. A request is all or nothing: one whose IDs would cross a limit waits whole. Only
requests accepted automatically count towards the limits (a person's approval does not use the budget), and
the window is the ledger's receive time (never the mail's forgeable Date).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrustPolicy:
    ids_per_domain_per_day: int = 200
    unverified_ids_per_day: int = 10
    trusted_authserv_ids: frozenset[str] = field(default_factory=frozenset)
    alignment: str = "relaxed"

    def __post_init__(self) -> None:
        for name in ("ids_per_domain_per_day", "unverified_ids_per_day"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.alignment not in ("relaxed", "strict"):
            raise ValueError(f"alignment must be 'relaxed' or 'strict', got {self.alignment!r}")
        ids = frozenset(str(i).strip().lower() for i in self.trusted_authserv_ids)
        if any(not i or any(c.isspace() or c in ";()" for c in i) for i in ids):
            raise ValueError(f"trusted authserv-ids must be single tokens, got {sorted(ids)!r}")
        object.__setattr__(self, "trusted_authserv_ids", ids)


@dataclass(frozen=True)
class Decision:
    state: str  # "received" (automatic) or "review"
    reason: str
    automatic: bool


def decide(policy: TrustPolicy, *, authenticity: str, org_domain: str, auth_reason: str, n_ids: int,
           used_by_domain: int, used_unverified: int) -> Decision:
    """The state of a new, well-formed request. ``used_*``: IDs accepted automatically in the last 24 hours
    (for this signing organization; for all unverified mail)."""
    if authenticity == "verified" and org_domain:
        total = used_by_domain + n_ids
        if total > policy.ids_per_domain_per_day:
            return Decision("review", f"domain_limit: {total} IDs from {org_domain} in 24 h > limit "
                                      f"{policy.ids_per_domain_per_day} ({auth_reason})", False)
        return Decision("received", "", True)
    if authenticity == "unverified":
        total = used_unverified + n_ids
        if total > policy.unverified_ids_per_day:
            return Decision("review", f"unverified_cap: {total} IDs from unverified senders in 24 h > cap "
                                      f"{policy.unverified_ids_per_day} ({auth_reason})", False)
        return Decision("received", "", True)
    return Decision("review", f"not_authenticated: {auth_reason or authenticity}", False)
