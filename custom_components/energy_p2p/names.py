"""How the integration names a party (a home, a phone's wallet): by the name the edge
controller gives it (`<field>_name` in the API's objects), else by a short form of its
account id, enough to tell homes apart."""

from __future__ import annotations

from .energy_p2p_client import JSON


def short_id(account: str) -> str:
    """ "ep5c0fdc…a0ea79": the start and end of a long account id (a short one as it is)."""
    return f"{account[:8]}…{account[-6:]}" if len(account) > 16 else account


def party_name(item: JSON, field: str) -> str | None:
    """The name of the party in `item[field]`: `item[field + "_name"]`, else its short id;
    None when `item` names no one there."""
    name = item.get(f"{field}_name")
    if isinstance(name, str) and name.strip():
        return name
    account = item.get(field)
    return short_id(account) if isinstance(account, str) and account else None


def private_to_names(offer: JSON) -> list[str]:
    """The names of the homes a private offer is addressed to (API `private_to`, or `to`;
    their names in `to_names`), in order; empty for an offer to anyone."""
    accounts = offer.get("private_to") or offer.get("to")
    if not isinstance(accounts, list):
        return []
    names = offer.get("to_names") or offer.get("private_to_names")
    given = names if isinstance(names, list) and len(names) == len(accounts) else []
    return [
        given[i] if i < len(given) and isinstance(given[i], str) and given[i] else short_id(str(a))
        for i, a in enumerate(accounts)
    ]


def offered_to(offer: JSON, account: str) -> bool:
    """Whether `account` may accept `offer`: it is public, or private to `account` among
    others (API `private_to`, or `to`)."""
    addressees = offer.get("private_to") or offer.get("to")
    return not isinstance(addressees, list) or not addressees or account in addressees


def counterparty_field(trade: JSON) -> str:
    """The field of a trade of ours that names the other party."""
    return "seller" if trade.get("role") == "buyer" else "buyer"
