"""The shared field readers' fast paths give exactly what the general path gives."""

from __future__ import annotations

from email.utils import parseaddr

from hypothesis import given
from hypothesis import strategies as st

from gateway.providers import fields


def _parsed(value: str) -> str | None:
    """``fields.email`` without its fast path for bare addresses."""
    address = parseaddr(value)[1].strip().lower()
    return address if "@" in address.strip("@") and " " not in address else None


@given(st.from_regex(fields._PLAIN_ADDRESS, fullmatch=True))
def test_a_bare_address_reads_as_parseaddr_reads_it(value: str) -> None:
    assert parseaddr(value)[1] == value
    assert fields.email(value) == _parsed(value)


@given(st.text(alphabet="aZ09_+-.@ <>\"'(),;:\\\n\t[]", max_size=30))
def test_any_text_reads_as_parseaddr_reads_it(value: str) -> None:
    assert fields.email(value) == _parsed(value)


def test_the_usual_spellings() -> None:
    assert (
        fields.email("Jordan.Lee+hg@Northwind.example.com") == "jordan.lee+hg@northwind.example.com"
    )
    assert (
        fields.email("Jordan Lee <jordan@northwind.example.com>") == "jordan@northwind.example.com"
    )
    assert fields.email("jordan@") is None
    assert fields.email("not an address") is None
