"""The refusal catalogue is the one source of every error code: the README and the contract agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tickets.refusals import CATALOGUE, Refusal, statuses

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT.parent / "shared" / "API.md"

# Codes of ../shared/API.md for features not built yet, each with the issue that builds it.
# Remove a code from here when its feature lands: from then on it must be in the catalogue.
NOT_YET_BUILT = {
}
# Codes the catalogue has that the contract does not name (it allows more): why each exists.
BEYOND_THE_CONTRACT = {
    "not_found": "no route matches the path",
    "invalid_idempotency_key": "an Idempotency-Key outside 1-128 printable ASCII",
    "internal_error": "a defect: never answered by design, always logged",
}


def status_code_pairs(text: str) -> set[tuple[int, str]]:
    """(status, code) for every `NNN `code`` in the text; codes listed after one status share it
    ("409 `sold_out` / `insufficient_inventory`")."""
    pairs: set[tuple[int, str]] = set()
    for status, codes in re.findall(r"\b([1-5]\d\d)\s+((?:`[a-z][a-z_]+`(?:\s*[,/]\s*)?)+)", text):
        pairs.update((int(status), code) for code in re.findall(r"`([a-z][a-z_]+)`", codes))
    return pairs


def readme_error_table() -> set[tuple[int, str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    pairs: set[tuple[int, str]] = set()
    for status, cell in re.findall(r"^\| (\d{3}) \| (.*) \|$", table, flags=re.MULTILINE):
        # Only the codes themselves, not the fields named in parentheses after them.
        pairs.update((int(status), code) for code in re.findall(r"(?:^|, )`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cell)))
    return pairs


def test_the_readme_error_table_is_the_catalogue() -> None:
    assert readme_error_table() == {(kind.status, kind.code) for kind in CATALOGUE.values()}


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/API.md is not beside the checkout")
def test_the_contract_codes_agree_with_the_catalogue() -> None:
    contract = status_code_pairs(CONTRACT.read_text(encoding="utf-8"))
    assert contract, "no codes found in API.md: the parser no longer matches it"
    disagreeing = {(status, code, CATALOGUE[code].status) for status, code in contract
                   if code in CATALOGUE and CATALOGUE[code].status != status}
    assert not disagreeing, "API.md gives these codes another status than the catalogue"
    missing = {code for _, code in contract if code not in CATALOGUE and code not in NOT_YET_BUILT}
    assert not missing, "API.md names codes the catalogue lacks"
    built = {code for code in NOT_YET_BUILT if code in CATALOGUE}
    assert not built, "these codes are built now: remove them from NOT_YET_BUILT"
    named = {code for _, code in contract}
    assert {code for code in CATALOGUE if code not in named} == set(BEYOND_THE_CONTRACT)


def test_a_refusal_renders_its_message_from_its_fields() -> None:
    assert Refusal("insufficient_inventory", available_seats=1).message == "Only 1 seat is left in this tier."
    assert Refusal("insufficient_inventory", available_seats=3).message == "Only 3 seats are left in this tier."
    limit = Refusal.from_outcome({"outcome": "limit_exceeded", "limit": "max_per_customer", "max_per_customer": 4,
                                  "remaining": 1, "reservation": {"ignored": True}})
    assert limit.fields == {"limit": "max_per_customer", "max_per_customer": 4, "remaining": 1}
    assert "1 remain" in limit.message
    details = [{"field": "tier_id", "message": "missing", "type": "missing"}]
    assert Refusal("validation_error", details=details).message == "Invalid request: check tier_id."
    with pytest.raises(KeyError):
        Refusal("no_such_code")


def test_codes_group_by_status_in_order() -> None:
    assert statuses(["sold_out", "event_not_found", "insufficient_inventory", "sold_out"]) == {
        404: ["event_not_found"], 409: ["sold_out", "insufficient_inventory"]}
